"""The supernet in NAS-Bench-201's space, judged by the benchmark's table (issue 23, item 5).

Trains NAS-Bench-201's weight-sharing skeleton (``nasnet_zoo.search.nasbench201_supernet.Supernet``: single path,
batch-statistics BN) through the search's own shared reward, ``SharedWeightEvaluator`` (the one training step,
data order, flips and fixed evaluation set of every ``--reward shared --space nasbench201`` search), with uniform
sampling (RSPS / SPOS) on real CIFAR-10. Then it scores a fixed set of cells with ``score`` on the same held-out
images: ``--random-cells`` uniform random cells of the space (seeded) plus the table's ``--top`` best cells by
``--truth-column``. It reports Kendall tau and Spearman (``rank_fidelity.rank_agreement``) with 95% bootstrap
intervals between the supernet's accuracies and the truth column over those cells, and the same figures on the
same cells for two references: parameter count alone (``params_mb``) and the 12-epoch column
(``cifar10_valid_12ep``); and the same within the top cells only. Nothing is tuned on the truth column.

What the bench sets beyond the evaluator: the learning rate follows a cosine schedule over the run (the bench
sets the evaluator's optimizer's lr before each step; a search keeps ``child.lr`` constant), and the steps can
be fixed by a time budget. Augmentation is the evaluator's, a random horizontal flip (the bench's own loop
before added NAS-Bench-201's 4-pixel random crop). The held-out images are ``--holdout`` images of the training
batches (``ProxyData``'s seeded stratified split), never trained on; every cell is scored on the first
``--eval-images`` of them, in batches of ``--eval-batch`` (BatchNorm uses batch statistics, so the batch size is
part of the measurement and is the same for every cell). The trained supernet is saved as a search checkpoint,
so a search can start from it (``shared.init_from CHECKPOINT_DIR``).

    flock /tmp/nasnet-heavy.lock env OMP_NUM_THREADS=1 python bench/nasbench201_supernet.py --channels 16 \
        --cells 1 --budget-min 10 --timing-steps 20     # the CPU size of docs/search.md, one thread
    python bench/nasbench201_supernet.py --steps 20 --random-cells 20 --top 10 --out-dir /tmp/nb201  # smoke test
    python bench/nasbench201_supernet.py --channels 16 --cells 5 --steps 50000 --device cuda        # a GPU size
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.search.rank_fidelity import rank_agreement
from nasnet_zoo.search.runner import build_evaluator
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.search.shared import SharedWeightEvaluator
from nasnet_zoo.search.spaces.nasbench201 import NASBench201Cell, NASBench201Space
from nasnet_zoo.search.state import STATE_NAME, save_search_state
from nasnet_zoo.search.table import NASBENCH201_CIFAR10, BenchmarkTable

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"
COLUMNS = ("cifar10_valid_200ep", "cifar10_test_200ep", "cifar10_valid_12ep", "cifar10_test_12ep", "params_mb")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--table", default=str(NASBENCH201_CIFAR10))
    p.add_argument("--truth-column", default="cifar10_valid_200ep")
    p.add_argument("--channels", type=int, default=8, help="C (NAS-Bench-201: 16)")
    p.add_argument("--cells", type=int, default=1, help="N cells per stage (NAS-Bench-201: 5)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--budget-min", type=float, default=0.0,
                   help="if > 0, --steps is set from the timed first steps to train for about this many minutes")
    p.add_argument("--lr", type=float, default=0.05, help="initial lr of the cosine schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--holdout", type=int, default=1000, help="training images held out as the evaluation pool")
    p.add_argument("--eval-images", type=int, default=500, help="held-out images every cell is scored on")
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--random-cells", type=int, default=200)
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a busy 2-core machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--timing-steps", type=int, default=5, help="steps timed (and printed) before the run")
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "figures"))
    p.add_argument("--checkpoint-dir", default=str(ROOT / "runs" / "nasbench201_supernet"),
                   help=f"where the trained supernet is saved as {STATE_NAME} (usable as shared.init_from)")
    return p.parse_args(argv)


def evaluator_for(args: argparse.Namespace) -> SharedWeightEvaluator:
    """The shared reward of a ``--space nasbench201`` search at the bench's sizes, uniformly sampled."""
    cfg = load_config(SearchConfig(space="nasbench201", reward="shared", seed=args.seed, data_dir=args.data_dir),
                      None, ["child.num_conv_filters", str(args.channels), "child.cells", str(args.cells),
                             "child.image_size", str(args.image_size), "child.batch_size", str(args.batch_size),
                             "child.val_size", str(args.holdout), "child.split_seed", str(args.seed),
                             "child.lr", str(args.lr), "child.weight_decay", str(args.weight_decay),
                             "shared.grad_clip", str(args.grad_clip), "shared.sampling", "uniform",
                             "shared.eval_images", str(args.eval_images),
                             "shared.eval_batch_size", str(args.eval_batch), "shared.device", args.device])
    cfg.shared.validate()
    return build_evaluator(cfg, torch.device(args.device))  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    space = NASBench201Space()
    table = BenchmarkTable(args.table, space, tuple(dict.fromkeys((args.truth_column, *COLUMNS))))
    ev = evaluator_for(args)
    if args.eval_images > len(ev.data.val_y):
        raise SystemExit(f"--eval-images {args.eval_images} > --holdout {len(ev.data.val_y)}")
    print(f"data: {len(ev.train_y)} training images, {len(ev.eval_y)} held-out evaluation images, "
          f"{args.image_size} px; torch threads {torch.get_num_threads()}", flush=True)
    n_params = sum(p.numel() for p in ev.params)
    sampler = ev.uniform_sampler(3)  # the warm-up's stream: uniform single paths drawn from the seed
    cosine_from = cosine_steps = 0  # where the schedule starts and its length, known once steps are timed

    def step() -> float:
        if cosine_steps:  # cosine from args.lr to 0 over the steps after the timed ones
            done = ev.step - cosine_from
            for group in ev.optimizer.param_groups:
                group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * done / cosine_steps))
        return ev.train(1, sampler)[0]["loss"]

    load_start = os.getloadavg()
    start = time.perf_counter()
    losses: list[float] = []
    for _ in range(min(args.timing_steps, args.steps)):
        losses.append(step())
    timed = (time.perf_counter() - start) / max(1, len(losses))
    if args.budget_min > 0:
        args.steps = max(len(losses) + 1, int(args.budget_min * 60 / timed))
    # cosine over the rest of the run; the timed steps ran at the initial lr, as the schedule's first steps would
    cosine_from, cosine_steps = len(losses), max(1, args.steps - len(losses))
    print(f"supernet C={args.channels} N={args.cells}, {n_params:,} parameters: {timed:.3f} s/step over the first "
          f"{len(losses)} steps -> {args.steps} steps ~ {timed * args.steps / 60:.1f} min", flush=True)
    curve = []
    while len(losses) < args.steps:
        losses.append(step())
        if len(losses) % 250 == 0 or len(losses) == args.steps:
            recent = float(np.mean(losses[-250:]))
            curve.append({"step": len(losses), "train_loss_250": recent})
            print(f"step {len(losses)}/{args.steps}: mean loss of the last 250 {recent:.3f}, "
                  f"{(time.perf_counter() - start) / len(losses):.3f} s/step", flush=True)
    train_s = time.perf_counter() - start
    load_end = os.getloadavg()
    checkpoint = Path(args.checkpoint_dir) / STATE_NAME
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_search_state(checkpoint, {}, 0, 0, evaluator=ev.state_dict())

    # the cells: uniform random (seeded, the table's rows) plus the table's top by the truth column
    rng = np.random.default_rng(args.seed)
    truth = table.values[args.truth_column]
    random_rows = [table.row(space.to_genotype(space.random_decisions(rng))) for _ in range(args.random_cells)]
    top_rows = [int(r) for r in np.argsort(-truth, kind="stable")[:args.top]]
    rows = list(dict.fromkeys(random_rows + top_rows))
    eval_start = time.perf_counter()
    scores = []
    for k, r in enumerate(rows):
        scores.append(ev.score(NASBench201Cell.from_arch(table.arches[r])))
        if (k + 1) % 50 == 0:
            print(f"scored {k + 1}/{len(rows)} cells", flush=True)
    eval_s = time.perf_counter() - eval_start
    scores_a = np.array(scores)
    rows_a = np.array(rows)
    in_top = np.isin(rows_a, top_rows)

    def agreement(values: np.ndarray, mask: np.ndarray | None = None) -> dict:
        m = np.ones(len(rows_a), bool) if mask is None else mask
        return rank_agreement(values[m], truth[rows_a][m], bootstrap=args.bootstrap, seed=args.seed)

    predictors = {"supernet": scores_a, "params_mb": table.values["params_mb"][rows_a],
                  "cifar10_valid_12ep": table.values["cifar10_valid_12ep"][rows_a]}
    subsets = {"all": np.ones(len(rows_a), bool), f"top{args.top}": in_top,
               f"random{args.random_cells}": np.isin(rows_a, random_rows)}
    figures = {name: {k: agreement(v, m) for k, m in subsets.items() if m.sum() >= 3}
               for name, v in predictors.items()}
    # the references over every cell of the table, against the 200-epoch test column (the 0.577, 0.594)
    from scipy.stats import kendalltau
    test = table.values["cifar10_test_200ep"]
    whole = {c: float(kendalltau(table.values[c], test)[0]) for c in ("params_mb", "cifar10_valid_12ep")}

    result = {
        "what": "NAS-Bench-201 supernet (uniform single path) ranking vs the table, issue 23 item 5",
        "conditions": {**{k: v for k, v in vars(args).items() if k not in ("out_dir",)},
                       "parameters": n_params, "train_images": int(len(ev.train_y)),
                       "augmentation": "random horizontal flip (SharedWeightEvaluator.train_batch)",
                       "lr_schedule": "cosine from lr to 0 after the timed steps",
                       "torch_threads": torch.get_num_threads(), "s_per_step_first": timed,
                       "s_per_step": train_s / args.steps, "train_s": train_s, "eval_s": eval_s,
                       "eval_s_per_cell": eval_s / len(rows), "loadavg_start": load_start, "loadavg_end": load_end,
                       "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "cells": {"random": len(random_rows), "top": len(top_rows), "distinct": len(rows)},
        "supernet_acc": {"mean": float(scores_a.mean()), "std": float(scores_a.std()),
                         "min": float(scores_a.min()), "max": float(scores_a.max()),
                         "mean_top": float(scores_a[in_top].mean()), "mean_random": float(scores_a[~in_top].mean())
                         if (~in_top).any() else None},
        "final_train_loss_250": float(np.mean(losses[-250:])),
        "curve": curve,
        "rank_vs_" + args.truth_column: figures,
        "whole_table_kendall_vs_cifar10_test_200ep": whole,
    }
    name = "nasbench201_supernet"
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "supernet_acc", *COLUMNS, "selected_as"])
        for r, s in zip(rows, scores):
            w.writerow([int(table.index[r]), table.arches[r], f"{s:.4f}",
                        *[f"{table.values[c][r]:g}" for c in COLUMNS],
                        "top" if r in top_rows else "random"])
    print(f"train {train_s:.0f} s ({train_s / args.steps:.3f} s/step), scoring {eval_s:.0f} s "
          f"({eval_s / len(rows):.2f} s/cell); load average {load_start[0]:.2f} -> {load_end[0]:.2f}")
    print(f"supernet accuracy over {len(rows)} cells: mean {scores_a.mean():.3f}, range "
          f"{scores_a.min():.3f}-{scores_a.max():.3f}")
    for name_, f_ in figures.items():
        for subset, r in f_.items():
            print(f"{name_:>20} {subset:>9} n={r['n']:3d}: Kendall {r['kendall']:+.3f} "
                  f"[{r.get('kendall_lo', math.nan):+.3f}, {r.get('kendall_hi', math.nan):+.3f}]  Spearman "
                  f"{r['spearman']:+.3f} [{r.get('spearman_lo', math.nan):+.3f}, {r.get('spearman_hi', math.nan):+.3f}]")
    print(f"whole table, Kendall vs cifar10_test_200ep: {whole}")
    print(f"wrote {out_dir / name}.json, .csv; checkpoint {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
