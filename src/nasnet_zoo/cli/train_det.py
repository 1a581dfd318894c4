"""Train and evaluate Faster R-CNN with a NASNet backbone on COCO-format data (detectron2-style CLI).

    python tools/train_det.py                                   # embedded demo data (scikit-learn digits)
    python tools/train_det.py --model fasterrcnn_nasnet_a_mobile_fpn \\
        --train-images coco/train2017 --train-ann coco/annotations/instances_train2017.json \\
        --val-images coco/val2017 --val-ann coco/annotations/instances_val2017.json --output-dir runs/det
    torchrun --nproc_per_node=8 tools/train_det.py ...          # DDP: NCCL on GPUs, gloo on CPU
    python tools/train_det.py --output-dir runs/det --resume
    python tools/train_det.py --eval-only --weights runs/det/model_final.pth --val-images ... --val-ann ...
    python tools/train_det.py --config-file configs/det/coco_mobile_fpn.yaml solver.base_lr 0.01
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nasnet_zoo.cli.common import (add_overrides, config_overrides, default_argument_parser, load_run_config,
                                   usage_error)
from nasnet_zoo.configs import config_path
from nasnet_zoo.utils.extras import exits_on_missing_extra

DEMO_CONFIG = config_path("det", "demo")


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """The dataset and weights flags both engines take, spelled the same way."""
    parser.add_argument("--train-images", help="folder of the training images")
    parser.add_argument("--train-ann", help="COCO instances JSON of the training images")
    parser.add_argument("--val-images", help="folder of the validation images")
    parser.add_argument("--val-ann", help="COCO instances JSON of the validation images")
    parser.add_argument("--weights", help="checkpoint to evaluate (--eval-only) or to start from")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = default_argument_parser("train-det", __doc__, output_help="run folder: checkpoints, metrics.jsonl, "
                                     "coco_eval.json, model_final.pth", resume_help="continue from "
                                     "OUTPUT/checkpoint.pt", eval_only=True)
    parser.add_argument("--engine", choices=("torchvision", "detectron2"), default="torchvision")
    parser.add_argument("--model", help="detector name (nasnet_zoo.detection.list_detectors())")
    add_data_flags(parser)
    parser.add_argument("--max-iter", type=int)
    parser.add_argument("--image-size", type=int, help="shorter side and max side of the resized images")
    parser.add_argument("--batch-size", type=int, help="images per process and iteration")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--vis", type=int, help="draw predictions beside ground truth for N val images")
    parser.add_argument("--verbose", action="store_true",
                        help="also log nasnet_zoo's details (debug level: COCOeval's own table, ...)")
    add_overrides(parser, "solver.base_lr 0.01 test.proposals 100")
    return parser.parse_args(argv)


def d2_argument_parser() -> argparse.ArgumentParser:
    """``--engine detectron2``'s flags: the shared front and data flags, then detectron2's launch flags; the
    trailing pairs are keys of detectron2's CfgNode (upper case, detectron2's spelling). Here, not in
    ``detection.d2``, so that it parses without detectron2 installed."""
    parser = default_argument_parser("train-det --engine detectron2", None, output_help="same as OUTPUT_DIR",
                                     eval_only=True)
    add_data_flags(parser)
    parser.add_argument("--num-gpus", type=int, default=1, help="worker processes on this machine, one per GPU")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's rank among --num-machines")
    parser.add_argument("--dist-url", default="auto", help="torch.distributed URL of machine 0 (auto: a free "
                        "local port, one machine only)")
    add_overrides(parser, "SOLVER.BASE_LR 0.01 (detectron2 keys)")
    return parser


#: ``--engine detectron2``: flag -> detectron2 CfgNode key.
D2_FLAG_KEYS = {"output_dir": "OUTPUT_DIR", "weights": "MODEL.WEIGHTS"}


def d2_args(argv: list[str]) -> argparse.Namespace:
    """``--engine detectron2``'s arguments for ``detection.d2.train_net.main``, ``opts`` holding the flags'
    CfgNode keys and then the trailing pairs (an engine does not import the front, so the mapping happens here)."""
    args = d2_argument_parser().parse_args(argv)
    args.opts = config_overrides(args, D2_FLAG_KEYS)
    return args


#: CLI flag -> config key; a flag given on the command line overrides the config file.
FLAG_KEYS = {"model": "model.name", "train_images": "data.train_images", "train_ann": "data.train_ann",
             "val_images": "data.val_images", "val_ann": "data.val_ann", "output_dir": "output_dir",
             "max_iter": "solver.max_iter", "batch_size": "solver.ims_per_batch", "device": "device",
             "vis": "test.vis"}


#: What a resumed run may change: where and how it runs, how long, and how it is tested and logged; the model,
#: data and solver settings define the checkpoint it continues.
MAY_CHANGE_ON_RESUME = ("output_dir", "device", "threads", "data.num_workers", "data.train_images",
                        "data.val_images", "solver.max_iter", "solver.checkpoint_period", "solver.log_period", "test")


def image_size_overrides(image_size: int | None) -> list[str]:
    """``--image-size S``: the shorter side and the longest side both S (one flag, two keys)."""
    return [] if image_size is None else ["input.min_size", f"[{image_size}]", "input.max_size", str(image_size)]


def engine(argv: list[str]) -> str:
    """``--engine``, read first: the detectron2 engine parses the rest with its own flags (``--num-gpus``)."""
    parser = argparse.ArgumentParser(prog="nasnet-zoo train-det", add_help=False)
    parser.add_argument("--engine", choices=("torchvision", "detectron2"), default="torchvision")
    return parser.parse_known_args(argv)[0].engine


def without_engine_flag(argv: list[str]) -> list[str]:
    """argv minus ``--engine X`` / ``--engine=X``, for the detectron2 tool, which has no such flag."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--engine":
            skip = True
        elif not arg.startswith("--engine="):
            out.append(arg)
    return out


@exits_on_missing_extra
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if engine(argv) == "detectron2":
        try:
            import detectron2  # noqa: F401
        except ImportError:
            return usage_error("--engine detectron2 needs detectron2, which has no wheel for torch 2.x: build it from "
                          "source with `pip install --no-build-isolation "
                          "'git+https://github.com/facebookresearch/detectron2.git'` (see docs/detection.md), or use "
                          "the default --engine torchvision")
        from nasnet_zoo.detection.d2.train_net import main as d2_main
        from nasnet_zoo.utils.run_lock import RunFolderBusy
        try:
            d2_main(d2_args(without_engine_flag(argv)))
        except (RunFolderBusy, FileNotFoundError, ValueError) as err:  # ConfigError and detectron2's are ValueErrors
            return usage_error(str(err))
        return 0

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.verbose:
        logging.getLogger("nasnet_zoo").setLevel(logging.DEBUG)
    from nasnet_zoo.config import ConfigError
    from nasnet_zoo.detection.data.coco import CocoFormatError
    from nasnet_zoo.detection.config import DetConfig
    from nasnet_zoo.detection.data.demo_data import uses_demo_data
    from nasnet_zoo.detection.engine.runner import run
    from nasnet_zoo.utils.checkpoint import CheckpointError
    from nasnet_zoo.utils.io import DiskFullError
    from nasnet_zoo.utils.run_lock import RunFolderBusy

    if args.config_file is None and not args.resume and not any((args.train_ann, args.val_ann)):
        args.config_file = str(DEMO_CONFIG)
    args.opts = [*image_size_overrides(args.image_size), *args.opts]
    try:
        cfg = load_run_config(DetConfig(), args, FLAG_KEYS, may_change_on_resume=MAY_CHANGE_ON_RESUME)
    except ConfigError as err:
        return usage_error(f"config: {err}")
    demo = uses_demo_data(cfg.data.train_ann, cfg.data.val_ann)
    try:
        metrics = run(cfg, resume=args.resume, eval_only=args.eval_only, weights=args.weights)
    except (RunFolderBusy, CocoFormatError, CheckpointError, FileNotFoundError, ValueError) as err:
        return usage_error(str(err))  # what the user gave cannot work
    except (FloatingPointError, DiskFullError) as err:  # the run itself failed
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    if metrics:
        out = Path(cfg.output_dir)
        board = f" (TensorBoard: {out / 'tensorboard'})" if (out / "tensorboard").is_dir() else ""
        print(f"\n{'demo' if demo else 'run'} finished: AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}\n"
              f"  metrics:      {out / 'coco_eval.json'}\n  training log: {out / 'metrics.jsonl'}{board}\n"
              f"  weights:      {out / 'model_final.pth'}\n"
              + (f"  pictures:     {out / 'vis'}\n" if cfg.test.vis else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
