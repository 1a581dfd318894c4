"""Train or evaluate a NASNet classifier (detectron2 ``train_net.py`` habits).

  python tools/train_cls.py --model nasnet_a_cifar --data-dir PATH/cifar-10-batches-py --output-dir runs/cifar
  python tools/train_cls.py --genotype runs/search1/top_genotypes.json --rank 1 --cells-per-stack 2 --num-conv-filters 32 ...
  torchrun --nproc_per_node=8 tools/train_cls.py --model nasnet_a_mobile --recipe imagenet --data-dir PATH/imagenet
  python tools/train_cls.py --output-dir runs/cifar --resume
  python tools/train_cls.py --model nasnet_a_cifar --weights runs/cifar/model_final.safetensors --eval-only ...

Settings: dataclass defaults <- --recipe / --config-file <- flags <- trailing KEY VALUE overrides
(``solver.ema_decay 0.9999``). ``--resume`` starts from the run's own OUTPUT/config.yaml instead of a recipe.
"""
from __future__ import annotations

import argparse
import json
import sys

from nasnet_zoo.cli.common import RenamedFlag, add_overrides, default_argument_parser, load_run_config, usage_error
from nasnet_zoo.config import ConfigError
from nasnet_zoo.training import TrainConfig, evaluate_only, recipe_path, train
from nasnet_zoo.training.config import SHORTCUTS
from nasnet_zoo.utils.checkpoint import CheckpointError
from nasnet_zoo.utils.extras import exits_on_missing_extra
from nasnet_zoo.utils.io import DiskFullError
from nasnet_zoo.utils.run_lock import RunFolderBusy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = default_argument_parser("train-cls", __doc__, output_help="run folder: checkpoint, metrics.jsonl, "
                                "tensorboard, model_final", resume_help="continue the run in --output-dir from its "
                                "checkpoint", eval_only=True)
    p.add_argument("--recipe", help="recipe name in configs/cls (cifar, cifar_cpu, imagenet) or a YAML path; "
                   "instead of --config-file")
    p.add_argument("--model", help="zoo model name (nasnet_a_cifar, nasnet_a_mobile, ...)")
    p.add_argument("--genotype", help="genotype JSON, search top_genotypes.json or journal.jsonl")
    p.add_argument("--rank", type=int, help="which genotype of a search's ranking: 1 = best, as in its top_genotypes.json "
                   "and printed report (0 still means the best, with a warning)")
    p.add_argument("--cells-per-stack", type=int, help="N of 'N @ F'")
    p.add_argument("--num-conv-filters", "--filters", type=int, action=RenamedFlag, metavar="F",
                   help="F of 'N @ F', the base filter count (--filters: deprecated spelling)")
    p.add_argument("--data-dir", help="cifar-10-batches-py, or a folder with train/<class>/ and val/<class>/")
    p.add_argument("--dataset", choices=("cifar10", "folder"), help="data layout (default from the recipe)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="cap the run at this many steps (the schedule spans them)")
    p.add_argument("--batch-size", type=int, help="global batch over all processes")
    p.add_argument("--image-size", type=int, help="training/eval resolution (folder data sets)")
    p.add_argument("--lr", type=float, help="base learning rate for the global batch")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--weights", help="our .safetensors or a training checkpoint to load strictly")
    p.add_argument("--pretrained", help="zoo weights tag or file to start from (fine-tune) or evaluate")
    add_overrides(p, "solver.label_smoothing 0.1")
    return p.parse_args(argv)


#: What a resumed run may change: where and how it runs and how long; the model, data and optimisation settings
#: define the checkpoint it continues.
MAY_CHANGE_ON_RESUME = ("output_dir", "device", "threads", "channels_last", "data.dir", "data.workers",
                        "log_period", "eval_period", "checkpoint_period", "solver.max_steps", "solver.epochs")


def build_config(args: argparse.Namespace) -> TrainConfig:
    if args.config_file and args.recipe:
        raise ConfigError("give --config-file or --recipe, not both")
    if args.recipe:
        args.config_file = str(recipe_path(args.recipe))
    # the flags carry the short names retrain_top's budget uses
    return load_run_config(TrainConfig(), args, SHORTCUTS, may_change_on_resume=MAY_CHANGE_ON_RESUME)


@exits_on_missing_extra
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except (ConfigError, FileNotFoundError, TypeError) as err:
        return usage_error(str(err))
    try:
        result = evaluate_only(cfg) if args.eval_only else train(cfg, resume=args.resume)
    except RunFolderBusy as err:
        return usage_error(str(err))
    except (CheckpointError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
