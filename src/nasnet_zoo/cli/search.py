"""NASNet cell search with a PPO-trained controller or random search (detectron2 ``train_net.py`` habits).

  python tools/search.py --strategy ppo --reward proxy --data-dir PATH/cifar-10-batches-py \\
      --children 20000 --backend ray --ray-address auto --output-dir runs/search1
  python tools/search.py --output-dir runs/search1 --resume            # after a crash or a stop
  python tools/search.py --output-dir runs/search1 --repair-journal    # when --resume names a damaged line
  python tools/search.py --strategy random ...                          # the baseline, same machinery
  python tools/search.py --reward oracle --children 2000 --seed 0 ...  # no training: checks the RL machinery
  python tools/search.py --space nasbench201 --reward table --strategy evolution --children 200 --output-dir runs/t
      # NAS-Bench-201: every child's real trained accuracy read from the shipped table (--table for another CSV)
  python tools/search.py --reward shared --data-dir PATH/cifar-10-batches-py --output-dir runs/ws1   # ENAS-style
  torchrun --nproc_per_node=8 tools/search.py --reward shared ...       # shared weights trained data-parallel
  python tools/search.py --config-file configs/search/laptop.yaml --data-dir ... child.lr 0.1 ppo.clip 0.1
  python tools/search.py --output-dir runs/search1 --report-only --retrain-top 5 --retrain-epochs 10

Settings: dataclass defaults <- --config-file <- flags <- trailing KEY VALUE overrides. ``--resume`` starts from
the run's own OUTPUT/config.yaml instead and refuses changes to what defines the search (every program's one
resume rule, nasnet_zoo.cli.common). Everything is validated before the first child is proposed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasnet_zoo.cli.common import (RenamedFlag, add_overrides, default_argument_parser, load_run_config,
                                   usage_error)
from nasnet_zoo.config import ConfigError, load_config
from nasnet_zoo.data.cifar import CifarLayoutError
from nasnet_zoo.search.backends import BACKENDS, RayError
from nasnet_zoo.search.journal import JOURNAL_NAME, REJECTED_NAME, JournalError, repair_journal
from nasnet_zoo.search.report import write_report
from nasnet_zoo.search.runner import make_search
from nasnet_zoo.search.settings import CONFIG_NAME, REWARDS, STRATEGIES, SearchConfig, SearchConfigError
from nasnet_zoo.search.spaces import SPACES
from nasnet_zoo.utils.extras import exits_on_missing_extra
from nasnet_zoo.utils.run_lock import RunFolderBusy, is_main_process, lock_run_folder

#: CLI flag -> config key; a flag given on the command line overrides the config file.
FLAG_KEYS = {
    "strategy": "strategy", "reward": "reward", "data_dir": "data_dir", "children": "children", "seed": "seed",
    "backend": "backend", "workers": "workers", "ray_address": "ray_address", "output_dir": "output_dir",
    "top_k": "top_k", "child_epochs": "child.epochs", "child_train_size": "child.train_size",
    "child_val_size": "child.val_size", "child_num_conv_filters": "child.num_conv_filters",
    "child_cells": "child.cells", "child_image_size": "child.image_size", "child_time_limit": "child.time_limit_s",
    "dataset": "dataset", "latency_target_ms": "latency.target_ms", "space": "space", "table": "table.path",
    "reward_column": "table.reward_column", "test_column": "table.test_column",
    "population": "evolution.population", "sample_size": "evolution.sample_size",
}
#: What a resumed search may change; the rest (strategy, reward, space, seed, controller, dataset, latency, table,
#: evolution) defines what its journal and checkpoint mean.
MAY_CHANGE_ON_RESUME = ("children", "data_dir", "backend", "workers", "worker_threads", "ray_address", "output_dir",
                        "top_k", "ppo", "child", "shared")
#: --retrain-* flag -> retrain_top budget keyword.
RETRAIN_BUDGET = {"retrain_epochs": "epochs", "retrain_max_steps": "max_steps", "retrain_batch_size": "batch_size",
                  "retrain_num_conv_filters": "num_conv_filters", "retrain_cells": "cells_per_stack",
                  "retrain_device": "device"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = default_argument_parser("search", __doc__, output_help="journal.jsonl, search_state.pt, metrics, "
                                "tensorboard, report", resume_help="continue the search in --output-dir")
    p.add_argument("--strategy", help=f"one of {', '.join(STRATEGIES)}")
    p.add_argument("--reward", help=f"one of {', '.join(REWARDS)} (table: a benchmark's measured accuracies)")
    p.add_argument("--space", help=f"search space, one of {', '.join(SPACES)} (default nasnet)")
    p.add_argument("--table", help="--reward table: a CSV with index, arch and numeric columns covering the space "
                   "(default: the shipped NAS-Bench-201 CIFAR-10 table)")
    p.add_argument("--reward-column", help="--reward table: the column searched on (default cifar10_valid_200ep)")
    p.add_argument("--test-column", help="--reward table: the column reported for what was found "
                   "(default cifar10_test_200ep)")
    p.add_argument("--population", type=int, help="--strategy evolution: population size P (default 10)")
    p.add_argument("--sample-size", type=int, help="--strategy evolution: tournament size S (default 3)")
    p.add_argument("--data-dir", help="CIFAR-10 python version (cifar-10-batches-py), or an image folder with "
                   "--dataset folder, for the proxy and shared rewards")
    p.add_argument("--dataset", help="cifar10 (default) or folder (ImageFolder layout: train/<class>/*.jpg and "
                   "val/<class>/*.jpg; rewards are held out of train/)")
    p.add_argument("--latency-target-ms", type=float, help="MnasNet soft constraint: reward = accuracy x "
                   "(latency / T)^latency.weight (-0.07); latency.* sets the timed network and device")
    p.add_argument("--children", type=int, help="children to evaluate in total (20,000 in the paper)")
    p.add_argument("--seed", type=int)
    p.add_argument("--backend", help=f"one of {', '.join(BACKENDS)} (inline: in this process, for the oracle)")
    p.add_argument("--workers", type=int, help="children at once: local worker processes or Ray tasks "
                   "(default 0: one per GPU, or 2 without GPUs)")
    p.add_argument("--ray-address", help="'local' (start Ray here), 'auto', or host:port of a running cluster")
    p.add_argument("--top-k", type=int, help="genotypes kept in top_genotypes.json")
    p.add_argument("--child-epochs", type=int)
    p.add_argument("--child-train-size", type=int, help="training images per child (0 = all not held out)")
    p.add_argument("--child-val-size", type=int, help="validation images held out of the training data")
    p.add_argument("--child-num-conv-filters", "--child-filters", type=int, action=RenamedFlag, metavar="F",
                   help="child base filter count (--child-filters: deprecated spelling)")
    p.add_argument("--child-cells", type=int, help="child normal cells per stack (N)")
    p.add_argument("--child-image-size", type=int)
    p.add_argument("--child-time-limit", type=float, help="seconds before a child is stopped with reward 0")
    p.add_argument("--report-only", action="store_true", help="write the report of --output-dir and exit")
    p.add_argument("--repair-journal", action="store_true", help="move the damaged lines of --output-dir's "
                   f"journal to {REJECTED_NAME}, keep every good one, and exit (then --resume)")
    p.add_argument("--plot-root", help="folder tree whose searches share the reward plot (default: output dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--retrain-top", type=int, metavar="K", help="then retrain the K best genotypes "
                   "(nasnet_zoo.training.retrain_top) and print their ranking")
    p.add_argument("--retrain-epochs", type=float)
    p.add_argument("--retrain-max-steps", type=int)
    p.add_argument("--retrain-batch-size", type=int)
    p.add_argument("--retrain-num-conv-filters", "--retrain-filters", type=int, action=RenamedFlag, metavar="F",
                   help="(--retrain-filters: deprecated spelling)")
    p.add_argument("--retrain-cells", type=int)
    p.add_argument("--retrain-device")
    add_overrides(p, "ppo.clip 0.1 child.lr 0.1")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> SearchConfig:
    return load_run_config(SearchConfig(), args, FLAG_KEYS, may_change_on_resume=MAY_CHANGE_ON_RESUME)


def retrain(args: argparse.Namespace, cfg: SearchConfig) -> None:
    from nasnet_zoo.training.retrain import format_ranking, retrain_top  # only needed here

    budget = {kw: getattr(args, flag) for flag, kw in RETRAIN_BUDGET.items() if getattr(args, flag) is not None}
    if cfg.data_dir:
        budget.setdefault("data_dir", cfg.data_dir)
    print(format_ranking(retrain_top(cfg.output_dir, args.retrain_top, **budget)))


def repair(output_dir: str | None) -> int:
    """--repair-journal, under the folder's lock: keep every good journal line and move the bad ones aside."""
    if not output_dir or not Path(output_dir).is_dir():
        return usage_error(f"--repair-journal needs --output-dir, the folder of a search (got {output_dir!r})")
    try:
        with lock_run_folder(output_dir):
            report = repair_journal(output_dir)
    except (JournalError, RunFolderBusy) as err:
        return usage_error(str(err))
    journal = Path(output_dir) / JOURNAL_NAME
    if not report.rejected and not report.renumbered:
        print(f"{journal}: all {report.kept} lines are good; nothing to repair")
        return 0
    moved = f"moved {len(report.rejected)} bad lines ({', '.join(map(str, report.rejected[:20]))}" \
            f"{', ...' if len(report.rejected) > 20 else ''}) to {Path(output_dir) / REJECTED_NAME}; " \
        if report.rejected else ""
    print(f"{journal}: {moved}kept {report.kept} children, numbered 0..{report.kept - 1}. `--resume` rebuilds the "
          "search state from the repaired journal and continues")
    return 0


@exits_on_missing_extra
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repair_journal:
        return repair(args.output_dir)
    try:
        if args.report_only:
            if not args.output_dir:
                raise ConfigError("--report-only needs --output-dir")
            cfg = load_config(SearchConfig(), Path(args.output_dir) / CONFIG_NAME)
        else:
            cfg = build_config(args)
            run = make_search(cfg, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, SearchConfigError, CifarLayoutError, RayError, JournalError, RunFolderBusy) as err:
        return usage_error(str(err))
    if not args.report_only:
        try:
            summary = run.run()
        except RayError as err:  # 'auto' found no cluster: known only when Ray tries, still before any child
            return usage_error(str(err))
        if not is_main_process():  # the other torchrun processes of a shared search: rank 0 reports
            return 0
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}))
    print(write_report(cfg.output_dir, cfg.top_k, args.plot_root, latency=cfg.latency))
    if args.retrain_top:
        retrain(args, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
