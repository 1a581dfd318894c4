"""PPO against random search with equal budgets, on real data (issue 14, item 6).

1. The paper's own comparison (Zoph et al. 2018, figure 6): ``--seeds`` searches per strategy with the same
   settings and the same number of children; per strategy, the mean over seeds (and std) of the top-1, top-5
   mean and top-25 mean search reward of the distinct genotypes (each at its mean over its evaluations).
2. The cells themselves: the best ``--retrain-top`` distinct cells of every search, plus NASNet-A, retrained
   alone with one fixed recipe (``nasnet_zoo.training``, evaluated on the test split: CIFAR-10's test batch,
   a folder's val/); per strategy the mean and std of their test top-1.

Runs in pieces: every search has its own folder (``OUT/search/<strategy>/seed<k>``) and is continued with
``resume`` (skipped once complete); every retrain has a folder per genotype (``OUT/retrain/<hash>``, resumable
and reused by any run that found the same cell). ``--max-minutes`` stops before starting new work after that
long; run the command again to continue. Results: ``--json`` and markdown tables (``--table-only`` prints
them from the JSON).

    python bench/search_h2h.py --size cpu --data-dir ../shared/data/cifar-10-subset/cifar-10-batches-py
    python bench/search_h2h.py --size quick --data-dir ...         # smoke test, a few minutes
    python bench/search_h2h.py --size gpu --data-dir PATH/cifar-10-batches-py
    python bench/search_h2h.py --table-only                        # the tables of the last result
"""
from __future__ import annotations

import argparse
import hashlib
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
from nasnet_zoo.genotypes import NASNET_A, Genotype
from nasnet_zoo.search.journal import JOURNAL_NAME, genotype_key
from nasnet_zoo.search.runner import make_search
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.training.retrain import RANKING_NAME, retrain_top
from nasnet_zoo.utils.io import atomic_write_json, read_jsonl

STRATEGIES = ("ppo", "random")
TOPS = (1, 5, 25)
RUN_NAME = "h2h_run.json"  # a finished search's timing, written when it completes

#: Sizes: search settings (SearchConfig KEY VALUE pairs, identical for both strategies) and the retrain recipe.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {
        "seeds": 2, "retrain_top": 1,
        "search": {"children": 40, "child.train_size": 256, "child.val_size": 200, "child.image_size": 16,
                   "child.num_conv_filters": 4, "child.cells": 1, "child.batch_size": 32, "ppo.minibatch": 10},
        "proxy": {"children": 8, "backend": "inline", "child.epochs": 1, "ppo.minibatch": 4},
        "shared": {"shared.train_steps": 5, "shared.controller_updates": 1},
        "retrain": {"recipe": "cifar_cpu", "max_steps": 4, "batch_size": 16, "num_conv_filters": 4, "cells_per_stack": 1},
    },
    "cpu": {
        "seeds": 3, "retrain_top": 3,
        "search": {"children": 1000, "child.train_size": 0, "child.val_size": 1000, "child.image_size": 16,
                   "child.num_conv_filters": 8, "child.cells": 1, "child.batch_size": 64},
        "proxy": {"children": 60, "child.train_size": 600, "child.epochs": 1, "workers": 1, "worker_threads": 1},
        # the search of configs/search/shared_cpu.yaml
        "shared": {"shared.train_steps": 50, "shared.controller_updates": 5, "shared.threads": 1},
        "retrain": {"recipe": "cifar_cpu", "max_steps": 100},
    },
    "gpu": {
        "seeds": 3, "retrain_top": 3,
        "search": {"children": 10000, "child.train_size": 0, "child.val_size": 5000, "child.image_size": 32,
                   "child.num_conv_filters": 16, "child.cells": 2, "child.batch_size": 128},
        "proxy": {"children": 500, "child.epochs": 5, "workers": 1},
        "shared": {"shared.train_steps": 100, "shared.controller_updates": 5},
        "retrain": {"recipe": "cifar", "epochs": 20, "num_conv_filters": 16, "cells_per_stack": 2},
    },
}


def search_config(size: dict[str, Any], reward: str, strategy: str, seed: int, data_dir: str, dataset: str,
                  folder: Path, opts: list[str]) -> SearchConfig:
    """The same search for both strategies: only ``strategy`` and ``seed`` differ."""
    settings = {**size["search"], **size[reward], "reward": reward, "strategy": strategy, "seed": seed,
                "data_dir": data_dir, "dataset": dataset, "output_dir": str(folder)}
    return load_config(SearchConfig(), None, [*(x for kv in settings.items() for x in map(str, kv)), *opts])


def run_search(cfg: SearchConfig) -> dict[str, Any]:
    """Run (or continue) one search; a finished one is only read back."""
    folder = Path(cfg.output_dir)
    done = folder / RUN_NAME
    if done.exists() and json.loads(done.read_text())["children"] >= cfg.children:
        return json.loads(done.read_text())
    resume = (folder / JOURNAL_NAME).exists()
    tic = time.perf_counter()
    summary = make_search(cfg, resume=resume, progress=False).run()
    previous = json.loads(done.read_text())["wall_seconds"] if done.exists() else 0.0
    record = {"children": summary["children"], "wall_seconds": round(previous + time.perf_counter() - tic, 1),
              "resumed": resume}
    atomic_write_json(done, record)
    return record


def distinct_children(folder: Path) -> list[tuple[Genotype, float]]:
    """Each distinct successfully evaluated genotype with its mean reward over its evaluations, best first.

    A shared-weight search scores a genotype again after each round of supernet training, and PPO samples its
    favourites more often than random search does: taking their best score would favour PPO by the luck of more
    draws, so the mean stands for the genotype.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in read_jsonl(folder / JOURNAL_NAME):
        if record["status"] == "ok":
            groups.setdefault(genotype_key(Genotype.from_dict(record["genotype"])), []).append(record)
    children = [(Genotype.from_dict(rs[0]["genotype"]), float(np.mean([r["reward"] for r in rs])))
                for rs in groups.values()]
    return sorted(children, key=lambda c: -c[1])


def search_rewards(folder: Path) -> dict[str, Any]:
    """Top-1, top-5 mean and top-25 mean of the distinct genotypes' rewards (the paper's figure 6)."""
    rewards = [reward for _, reward in distinct_children(folder)]
    return {f"top{k}": float(np.mean(rewards[:k])) for k in TOPS} | {"distinct": len(rewards)}


def retrain_folder(root: Path, genotype: Genotype) -> Path:
    return root / hashlib.sha1(genotype_key(genotype).encode()).hexdigest()[:12]


def retrain(genotype: Genotype, reward: float | None, folder: Path, recipe: dict[str, Any], data_dir: str,
            dataset: str, threads: int) -> dict[str, Any]:
    """Test top-1 of one cell trained alone with the fixed recipe (cached per genotype, resumable)."""
    ranking = folder / RANKING_NAME
    if not ranking.exists():
        source = folder / "genotype.json"
        atomic_write_json(source, {"genotype": genotype.to_dict(), "reward": reward})
        budget = {k: v for k, v in recipe.items() if k != "recipe"}
        tic = time.perf_counter()
        retrain_top(source, 1, output_dir=folder, recipe=recipe["recipe"], data_dir=data_dir, dataset=dataset,
                    overrides=("threads", str(threads)), **budget)
        atomic_write_json(folder / "seconds.json", {"seconds": round(time.perf_counter() - tic, 1)})
    [row] = json.loads(ranking.read_text())
    seconds = json.loads((folder / "seconds.json").read_text())["seconds"] if (folder / "seconds.json").exists() \
        else None
    return {"top1": row["top1"], "params": row["params"], "seconds": seconds, "folder": str(folder)}


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values)}


def markdown_tables(report: dict[str, Any]) -> str:
    """The two tables of docs/search.md from a result."""
    lines = [f"Search rewards ({report['reward']} reward, {report['children']} children per search, "
             f"{report['seeds']} seeds; mean ± std over seeds)", "",
             "| strategy | top-1 | top-5 mean | top-25 mean |", "|---|---:|---:|---:|"]
    for strategy in STRATEGIES:
        s = report["search"].get(strategy)
        if s:
            lines.append(f"| {strategy} | " + " | ".join(
                f"{s[f'top{k}']['mean']:.4f} ± {s[f'top{k}']['std']:.4f}" for k in TOPS) + " |")
    retrained = report.get("retrained")
    if retrained:
        lines += ["", f"Best {report['retrain_top']} cells of every search retrained alone "
                      f"({report['retrain_recipe']}; test top-1 %, mean ± std over cells)", "",
                  "| cells | n | test top-1 mean | std | best |", "|---|---:|---:|---:|---:|"]
        for name, row in retrained.items():
            lines.append(f"| {name} | {row['n']} | {row['mean']:.2f} | {row['std']:.2f} | {row['best']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--reward", default="shared", help="shared (the one-machine search) or proxy")
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("NASNET_ZOO_TEST_DATA", ""),
                                                      "cifar-10-subset", "cifar-10-batches-py"))
    p.add_argument("--dataset", default="cifar10", help="cifar10 or folder")
    p.add_argument("--out", default=None, help="runs and retrains (default runs/bench/search_h2h_<size>)")
    p.add_argument("--json", default=None, help="result (default runs/bench/search_h2h.json; "
                   "search_h2h_<size>.json for other sizes)")
    p.add_argument("--seeds", type=int, help="searches per strategy")
    p.add_argument("--children", type=int, help="children per search")
    p.add_argument("--retrain-top", type=int, help="cells retrained per search")
    p.add_argument("--threads", type=int, default=1, help="torch threads for retraining (1 on a shared machine)")
    p.add_argument("--max-minutes", type=float, default=None, help="start no new search or retrain after this "
                   "long; run again to continue")
    p.add_argument("--table-only", action="store_true", help="print the tables of --json and exit")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE SearchConfig overrides for every search")
    args = p.parse_args(argv)
    json_path = Path(args.json or ("runs/bench/search_h2h.json" if args.size == "cpu"
                                   else f"runs/bench/search_h2h_{args.size}.json"))
    if args.table_only:
        print(markdown_tables(json.loads(json_path.read_text())))
        return 0
    size = SIZES[args.size]
    if args.children:
        size = {**size, args.reward: {**size[args.reward], "children": args.children}}
    seeds = args.seeds or size["seeds"]
    top_n = args.retrain_top or size["retrain_top"]
    out = Path(args.out or f"runs/bench/search_h2h_{args.size}")
    start = time.perf_counter()

    def out_of_time() -> bool:
        return args.max_minutes is not None and time.perf_counter() - start > 60 * args.max_minutes

    configs = {(strategy, seed): search_config(size, args.reward, strategy, seed, args.data_dir, args.dataset,
                                               out / "search" / strategy / f"seed{seed}", args.opts)
               for seed in range(seeds) for strategy in STRATEGIES}  # interleaved: pieces stay comparable
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for (strategy, seed), cfg in configs.items():
        if out_of_time():
            break
        print(f"search {strategy} seed {seed}: {cfg.children} children -> {cfg.output_dir}", flush=True)
        runs[strategy, seed] = run_search(cfg) | search_rewards(Path(cfg.output_dir))
    complete = len(runs) == len(configs)

    cells: dict[str, list[tuple[Genotype, float | None]]] = {name: [] for name in (*STRATEGIES, "NASNet-A")}
    if complete:  # retrain only once every search is in, so that no cell is chosen from a partial search
        for (strategy, seed), cfg in configs.items():
            cells[strategy] += distinct_children(Path(cfg.output_dir))[:top_n]
        cells["NASNet-A"] = [(NASNET_A, None)]
    retrained: dict[str, list[dict[str, Any]]] = {name: [] for name in cells}
    for name, entries in cells.items():
        for genotype, reward in entries:
            if out_of_time():
                complete = False
                break
            folder = retrain_folder(out / "retrain", genotype)
            print(f"retrain a {name} cell (search reward {reward}) -> {folder}", flush=True)
            retrained[name].append(retrain(genotype, reward, folder, size["retrain"], args.data_dir, args.dataset,
                                           args.threads) | {"search_reward": reward})

    sample = next(iter(configs.values()))
    report: dict[str, Any] = {
        "complete": complete, "size": args.size, "reward": args.reward, "children": sample.children,
        "seeds": seeds, "retrain_top": top_n, "retrain_recipe": ", ".join(f"{k} {v}" for k, v in
                                                                            size["retrain"].items()),
        "search_settings": {**size["search"], **size[args.reward]}, "child": vars(sample.child),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available(), "load_average": list(os.getloadavg())},
        "runs": {f"{s}/seed{k}": run for (s, k), run in runs.items()},
        "search": {s: {f"top{k}": mean_std([r[f"top{k}"] for (rs, _), r in runs.items() if rs == s]) for k in TOPS}
                   for s in STRATEGIES if any(rs == s for rs, _ in runs)},
        "retrained": {name: {**mean_std([r["top1"] for r in rows]), "best": max(r["top1"] for r in rows),
                             "cells": rows} for name, rows in retrained.items() if rows},
        "wall_seconds_this_call": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(json_path, report)
    print(markdown_tables(report))
    print(f"wrote {json_path}" + ("" if complete else " (incomplete: run the same command again to continue)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
