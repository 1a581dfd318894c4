"""Weight-sharing searches in NAS-Bench-201's space, judged by the table (issue 23, item 5).

For each seed, through the one search loop (``runner.SearchRun``, ``--reward shared --space nasbench201``):

1. **warm-up**: a random search whose first round trains the supernet ``shared.warmup_steps`` uniform steps and
   whose rounds train nothing more (``shared.train_steps 0``); it scores ``--uniform-cells`` uniform cells with
   the warmed-up weights, so its answer is "the warm-up supernet's best of N uniform cells", and its checkpoint
   is the warm-up every search of the seed starts from (``shared.init_from``). ``--warmup-from`` takes a
   supernet trained elsewhere instead (the same for every seed);
2. **searches**: random search, PPO (the paper's settings) and regularized evolution (P = 10, S = 3), each from
   that warm-up, each evaluating ``--children`` children with the recipe's training rounds in between.

The cell a search returns is rank 1 of its ``top_genotypes.json`` (a genotype scored in several rounds stands
at its mean shared reward), over its first B children for each ``--budgets`` B (no search knows its budget, so
a longer search's first B children are the shorter search's). Each returned cell is looked up in the table:
``cifar10_valid_200ep`` and ``cifar10_test_200ep``, mean +- std (ddof 1) over seeds, beside the table-reward
searches at the same budgets (docs/figures/search_strategies.json, 500 seeds) and NAS-Bench-201's published
weight-sharing rows. The table is read only after the searches: nothing is tuned on it.

Resumable by folder: ``ROOT/seed<S>/<phase>`` is a search folder; a finished one (journal full) is not run
again, a started one is continued with ``--resume`` semantics. Every invocation appends its wall time to the
folder's ``bench_sessions.jsonl``, so the seconds reported are the sum over sessions.

    flock /tmp/nasnet-heavy.lock env OMP_NUM_THREADS=1 python bench/nasbench201_shared_search.py   # docs/search.md
    ... --warmup-from runs/nasbench201_supernet --root runs/nb201_shared_fixed \
        --out docs/figures/nasbench201_shared_search_fixed.json --children 100 --budgets 100 --uniform-cells 100 \
        shared.train_steps 0     # the same searches on bench/nasbench201_supernet.py's supernet, kept fixed
    python bench/nasbench201_shared_search.py --seeds 0 --children 20 --budgets 20 --uniform-cells 20 \
        --root /tmp/nb201s --out /tmp/nb201s.json shared.warmup_steps 20     # a smoke test, a minute
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.search.journal import JOURNAL_NAME
from nasnet_zoo.search.rank_fidelity import rank_agreement
from nasnet_zoo.search.report import top_children, write_top_genotypes
from nasnet_zoo.search.runner import SearchRun
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.search.spaces import NASBench201Space, genotype_from_dict
from nasnet_zoo.search.state import STATE_NAME
from nasnet_zoo.search.table import NASBENCH201_CIFAR10, BenchmarkTable
from nasnet_zoo.utils.io import atomic_write_json, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"
RECIPE = ROOT / "src" / "nasnet_zoo" / "configs" / "search" / "nasbench201_shared.yaml"
VALID, TEST = "cifar10_valid_200ep", "cifar10_test_200ep"
SESSIONS = "bench_sessions.jsonl"
#: our strategy -> its label in docs/figures/search_strategies.json (the table-reward searches)
TABLE_LABELS = {"random": "random", "ppo": "ppo (paper)", "evolution": "evolution"}
#: NAS-Bench-201 (Dong and Yang, ICLR 2020), weight-sharing rows, CIFAR-10 test %, as issue 23 quotes them from
#: the paper's table; not re-checked against the paper here: check before citing.
PUBLISHED_WEIGHT_SHARING = {"RSPS": (87.66, 1.69), "ENAS": (54.30, None), "DARTS": (54.30, None),
                            "SETN": (86.19, 4.63), "GDAS": (93.51, 0.13)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--config", default=str(RECIPE), help="the search recipe every run starts from")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=list(TABLE_LABELS), choices=list(TABLE_LABELS))
    p.add_argument("--children", type=int, default=200, help="children each search evaluates")
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 200], help="report the first B children")
    p.add_argument("--uniform-cells", type=int, default=200, help="cells the warm-up run scores uniformly")
    p.add_argument("--warmup-from", default="",
                   help="instead of training a warm-up, take this supernet (a shared search folder or checkpoint, "
                        "e.g. bench/nasbench201_supernet.py's) for every seed")
    p.add_argument("--root", default=str(ROOT / "runs" / "nb201_shared"))
    p.add_argument("--out", default=str(ROOT / "docs" / "figures" / "nasbench201_shared_search.json"))
    p.add_argument("--strategies-json", default=str(ROOT / "docs" / "figures" / "search_strategies.json"),
                   help="the table-reward searches to compare with (bench/search_strategies.py)")
    p.add_argument("--table", default=str(NASBENCH201_CIFAR10))
    p.add_argument("opts", nargs="*", help="KEY VALUE pairs over the recipe, for every run "
                   "(e.g. child.num_conv_filters 8)")
    args = p.parse_args(argv)
    if max(args.budgets) > args.children:
        p.error(f"--budgets {max(args.budgets)} > --children {args.children}")
    return args


def config_for(args: argparse.Namespace, seed: int, phase: str, folder: Path) -> SearchConfig:
    """The recipe with this run's settings: the warm-up run, or a search from the seed's warm-up."""
    common = ["data_dir", args.data_dir, "seed", str(seed), "output_dir", str(folder), *args.opts]
    if phase == "warmup":
        own = ["strategy", "random", "children", str(args.uniform_cells), "shared.train_steps", "0",
               "shared.init_from", args.warmup_from]
        if args.warmup_from:
            own += ["shared.warmup_steps", "0"]
    else:
        own = ["strategy", phase, "children", str(args.children), "shared.warmup_steps", "0",
               "shared.init_from", str(folder.parent / "warmup")]
    return load_config(SearchConfig(), args.config, [*common, *own])


def run_folder(cfg: SearchConfig) -> list[dict[str, Any]]:
    """Run, continue or skip the search of ``cfg``; its journal records."""
    folder = Path(cfg.output_dir)
    records = read_jsonl(folder / JOURNAL_NAME)
    if len(records) >= cfg.children:
        print(f"{folder}: done ({len(records)} children)", flush=True)
        return records
    resume = bool(records) or (folder / STATE_NAME).exists()
    print(f"{folder}: {'continuing' if resume else 'starting'} at {len(records)}/{cfg.children} children",
          flush=True)
    load, tic = os.getloadavg(), time.perf_counter()
    summary = SearchRun(cfg, resume=resume, progress=False, metrics=True).run()
    session = {"seconds": time.perf_counter() - tic, "children_before": len(records),
               "children_after": summary["children"], "train_steps": summary.get("train_steps"),
               "train_s": summary.get("train_seconds"),
               "torch_threads": cfg.shared.threads or torch.get_num_threads(),
               "loadavg_start": load, "loadavg_end": os.getloadavg()}
    with open(folder / SESSIONS, "a", encoding="utf-8") as f:
        f.write(json.dumps(session) + "\n")
    records = read_jsonl(folder / JOURNAL_NAME)
    write_top_genotypes(folder, records, cfg.top_k)
    print(f"{folder}: {summary['children']} children in {session['seconds']:.0f} s, best shared reward "
          f"{summary['best_reward']:.3f}", flush=True)
    return records


def timing(folder: Path) -> dict[str, Any]:
    """Wall, training and scoring seconds over the bench's sessions (scoring from the journal); the first
    round's training seconds (for the warm-up run: the warm-up)."""
    sessions = read_jsonl(folder / SESSIONS)
    records = read_jsonl(folder / JOURNAL_NAME)
    rounds = [m["shared/round_seconds"] for m in read_jsonl(folder / "metrics.jsonl") if "shared/round_seconds" in m]
    return {"wall_s": sum(s["seconds"] for s in sessions), "sessions": len(sessions),
            "train_s": sum(s.get("train_s") or 0.0 for s in sessions),
            "scoring_s": sum(r["seconds"] for r in records), "first_round_s": rounds[0] if rounds else None,
            "loadavg": [s["loadavg_start"] for s in sessions] + [s["loadavg_end"] for s in sessions[-1:]],
            "torch_threads": sorted({s["torch_threads"] for s in sessions})}


def judge(records: list[dict[str, Any]], budget: int, table: BenchmarkTable) -> dict[str, Any]:
    """The cell a search returns after ``budget`` children, and the best cell it queried, by the table."""
    first = records[:budget]
    best = top_children(first, 1)[0]
    row = table.row(genotype_from_dict(best["genotype"]))
    queried = {table.row(genotype_from_dict(r["genotype"])) for r in first}
    oracle = max(queried, key=lambda r: table.values[VALID][r])
    order = np.argsort(-table.values[VALID], kind="stable")
    return {"arch": table.arches[row], "shared_reward": best["reward"], "evaluations": best["evaluations"],
            VALID: float(table.values[VALID][row]), TEST: float(table.values[TEST][row]),
            "table_rank_by_valid": int(np.flatnonzero(order == row)[0]) + 1, "distinct_queried": len(queried),
            "best_queried_" + VALID: float(table.values[VALID][oracle]),
            "best_queried_" + TEST: float(table.values[TEST][oracle])}


def mean_std(values: list[float]) -> dict[str, float | None]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else None, "n": int(len(a))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    start, load_start = time.perf_counter(), os.getloadavg()
    phases = ["warmup", *args.strategies]
    journals: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for seed in args.seeds:
        journals[seed] = {}
        for phase in phases:
            cfg = config_for(args, seed, phase, root / f"seed{seed}" / phase)
            journals[seed][phase] = run_folder(cfg)
    wall = time.perf_counter() - start

    # the table, only now
    space = NASBench201Space()
    table = BenchmarkTable(args.table, space, (VALID, TEST))
    budgets = {"warmup": sorted({min(b, args.uniform_cells) for b in args.budgets}),
               **{s: sorted(args.budgets) for s in args.strategies}}
    runs: dict[str, Any] = {}
    for seed, by_phase in journals.items():
        runs[str(seed)] = {}
        for phase, records in by_phase.items():
            folder = root / f"seed{seed}" / phase
            runs[str(seed)][phase] = {"children": len(records), **timing(folder),
                                      "budgets": {str(b): judge(records, b, table) for b in budgets[phase]}}
        warm = by_phase["warmup"]  # uniform cells, one set of weights: the warm-up supernet's rank fidelity
        distinct = {table.row(genotype_from_dict(r["genotype"])): r["reward"] for r in warm}
        rows = np.array(list(distinct))
        if len(rows) >= 3:
            runs[str(seed)]["warmup"]["rank_vs_" + VALID] = rank_agreement(
                np.array(list(distinct.values())), table.values[VALID][rows], seed=seed)

    labels = {"warmup": "warm-up, best of N uniform", **{s: s for s in args.strategies}}
    summary: dict[str, Any] = {}
    for phase in phases:
        summary[labels[phase]] = {str(b): {c: mean_std([runs[str(s)][phase]["budgets"][str(b)][c] for s in args.seeds])
                                          for c in (VALID, TEST, "best_queried_" + TEST, "shared_reward")}
                                  for b in budgets[phase]}
    table_reward: dict[str, Any] = {}
    strategies_json = Path(args.strategies_json)
    if strategies_json.is_file():
        ref = json.loads(strategies_json.read_text())
        for s in args.strategies:
            by_budget = ref["strategies"][TABLE_LABELS[s]]["budgets"]
            table_reward[s] = {str(b): {k: by_budget[str(b)][k] for k in ("reward_mean", "reward_std", "test_mean",
                                                                          "test_std")}
                               for b in args.budgets if str(b) in by_budget}
        table_reward["seeds"] = ref["seeds"]
    best = table.best(VALID)
    recipe = load_config(SearchConfig(), args.config, list(args.opts))
    result = {
        "what": "weight-sharing searches (--reward shared --space nasbench201) judged by NAS-Bench-201's table, "
                "issue 23 item 5",
        "conditions": {"recipe": str(args.config), "opts": list(args.opts), "seeds": args.seeds,
                       "warmup_from": args.warmup_from,
                       "children": args.children, "uniform_cells": args.uniform_cells,
                       "child": vars(recipe.child), "shared": vars(recipe.shared),
                       "ppo": vars(recipe.ppo), "evolution": vars(recipe.evolution),
                       "this_invocation_s": wall, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "machine": platform.platform(),
                       "cpus": os.cpu_count(), "torch": torch.__version__},
        "table_optimum": {"index": int(table.index[best]), "arch": table.arches[best],
                          VALID: float(table.values[VALID][best]), TEST: float(table.values[TEST][best]),
                          "test_max": float(table.values[TEST].max())},
        "summary": summary,
        "table_reward_searches": table_reward,
        "published_weight_sharing_test": {k: {"mean": m, "std": s} for k, (m, s) in PUBLISHED_WEIGHT_SHARING.items()},
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    for label, by_budget in summary.items():
        for b, r in by_budget.items():
            print(f"{label:<28} {b:>4}: valid {r[VALID]['mean']:.2f} +- {r[VALID]['std'] or 0:.2f}, test "
                  f"{r[TEST]['mean']:.2f} +- {r[TEST]['std'] or 0:.2f} (best queried: test "
                  f"{r['best_queried_' + TEST]['mean']:.2f}); shared reward {r['shared_reward']['mean']:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
