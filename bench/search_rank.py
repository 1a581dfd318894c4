"""Rank fidelity of the shared-weight reward (issue 14, item 5): does the supernet rank cells as training them
alone does?

For ``--genotypes`` uniformly sampled cells plus NASNet-A's blocks (its concat made the search space's "unused
states", so that both rewards score the very same architecture), two rewards on the same held-out validation
images (``child.val_size`` out of the training split):

* stand-alone: the proxy child (``train_child``) trained from scratch at a fixed budget, once per
  ``--standalone-seeds`` seed; with two seeds, Kendall's tau between the seeds is the ceiling any cheaper
  reward can reach at this budget;
* shared: a supernet (``SharedWeightEvaluator``) trained for ``--shared-steps`` minibatches with one uniformly
  sampled child per minibatch (as random search trains it), then each cell scored with the shared weights;
  or, with ``--supernet-from RUN``, the weights of a finished shared search (its child settings are used).

Kendall's tau between the two (scipy.stats.kendalltau) with a 95% percentile bootstrap interval over the
cells (scipy.stats.bootstrap, paired), printed and written to ``--json``. Stand-alone results are cached per
(genotype, seed) in ``OUT/standalone.jsonl`` and the shared scores in ``OUT/shared.json``, so a killed run
continues where it stopped.

    python bench/search_rank.py --data-dir ../shared/data/cifar-10-subset/cifar-10-batches-py            # cpu
    python bench/search_rank.py --size quick --data-dir ...                                              # smoke
    python bench/search_rank.py --size gpu --data-dir PATH/cifar-10-batches-py                           # 1 GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nasnet_zoo.config import load_config
from nasnet_zoo.genotypes import NASNET_A, Genotype
from nasnet_zoo.search.child import ProxyData, train_child
from nasnet_zoo.search.journal import genotype_key
from nasnet_zoo.search.settings import CONFIG_NAME, SearchConfig
from nasnet_zoo.search.spaces import NASNetSpace
from nasnet_zoo.utils.io import append_jsonl, atomic_write_json, read_jsonl

#: Sizes: the child (the same network for both rewards), the stand-alone budget and the supernet's steps.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"genotypes": 5, "standalone_seeds": 1, "shared_steps": 20, "bootstrap": 200,
              "child": {"epochs": 1, "train_size": 256, "val_size": 200, "image_size": 16, "filters": 4,
                        "cells": 1, "batch_size": 32}},
    "cpu": {"genotypes": 20, "standalone_seeds": 2, "shared_steps": 1500, "bootstrap": 2000,
            "child": {"epochs": 2, "train_size": 2000, "val_size": 1000, "image_size": 16, "filters": 8,
                      "cells": 1, "batch_size": 64}},
    "gpu": {"genotypes": 40, "standalone_seeds": 2, "shared_steps": 10000, "bootstrap": 5000,
            "child": {"epochs": 10, "train_size": 0, "val_size": 5000, "image_size": 32, "filters": 16,
                      "cells": 2, "batch_size": 128}},
}
STANDALONE_NAME, SHARED_NAME = "standalone.jsonl", "shared.json"


def cells_to_rank(n: int, seed: int) -> list[Genotype]:
    """NASNet-A's blocks (search-space concat) and ``n`` uniformly random cells from ``seed``."""
    space = NASNetSpace()
    rng = np.random.default_rng([seed, 0x5A4C])
    nasnet = space.to_genotype(space.to_decisions(NASNET_A), name="NASNet-A blocks")
    return [nasnet, *(space.to_genotype(space.random_decisions(rng), name=f"uniform-{i}") for i in range(n))]


def standalone_accuracies(cells: list[Genotype], data: ProxyData, cfg: SearchConfig, seeds: int, out: Path,
                          device: str) -> tuple[np.ndarray, float]:
    """[cells, seeds] validation accuracies of the cells trained alone (cached per genotype, seed and budget)."""
    budget = json.dumps(vars(cfg.child), sort_keys=True)
    cache = {(r["key"], r["seed"]): r for r in read_jsonl(out / STANDALONE_NAME) if r["budget"] == budget} \
        if (out / STANDALONE_NAME).exists() else {}
    seconds = 0.0
    acc = np.zeros((len(cells), seeds))
    for i, genotype in enumerate(cells):
        key = genotype_key(genotype)
        for seed in range(seeds):
            if (key, seed) not in cache:
                result = train_child(genotype, data, cfg.child, device=device, seed=1000 * seed + i)
                if result.status != "ok":
                    raise RuntimeError(f"stand-alone child {genotype.name} failed: {result.status} {result.reason}")
                cache[key, seed] = {"key": key, "seed": seed, "name": genotype.name, "accuracy": result.reward,
                                    "seconds": round(result.seconds, 2), "budget": budget}
                append_jsonl(out / STANDALONE_NAME, cache[key, seed])
                print(f"  stand-alone {genotype.name:>16} seed {seed}: {result.reward:.4f} ({result.seconds:.1f} s)")
            acc[i, seed] = cache[key, seed]["accuracy"]
            seconds += cache[key, seed]["seconds"]
    return acc, seconds


def shared_accuracies(cells: list[Genotype], data: ProxyData, cfg: SearchConfig, steps: int, seed: int,
                      out: Path, device: str, supernet_from: str | None) -> tuple[np.ndarray, dict[str, float]]:
    """Accuracy of every cell with the weights of one supernet: trained here on uniformly sampled children, or
    those of the finished shared search in ``supernet_from``."""
    from nasnet_zoo.search.shared import SharedWeightEvaluator, load_shared_state  # issue 14 items 1-2

    keys = [genotype_key(g) for g in cells]
    source = str(Path(supernet_from).resolve()) if supernet_from else f"uniform, {steps} steps"
    path = out / SHARED_NAME
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["source"] == source and saved["keys"] == keys:
            return np.array(saved["accuracy"]), saved["seconds"]
    evaluator = SharedWeightEvaluator(cfg, data, device=device)
    tic = time.perf_counter()
    if supernet_from:
        state = load_shared_state(Path(supernet_from))
        if state is None:
            raise SystemExit(f"error: {supernet_from} holds no shared-search checkpoint (shared_state.pt)")
        evaluator.load_state_dict(state["evaluator"])
    else:
        space, rng = NASNetSpace(), np.random.default_rng([seed, 0x5EA4])
        evaluator.train(steps, lambda: space.to_genotype(space.random_decisions(rng)))
    trained = time.perf_counter() - tic
    accuracy = [evaluator.score(g) for g in cells]
    seconds = {"train": round(trained, 1), "score": round(time.perf_counter() - tic - trained, 1)}
    atomic_write_json(path, {"source": source, "keys": keys, "accuracy": accuracy, "seconds": seconds})
    return np.array(accuracy), seconds


def kendall(x: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """Kendall's tau-b with its p-value and a 95% percentile bootstrap interval over paired cells."""
    with warnings.catch_warnings():  # constant data (e.g. every cell at chance) gives NaN, reported as None
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        tau = stats.kendalltau(x, y)
        interval = stats.bootstrap((x, y), lambda a, b: stats.kendalltau(a, b).statistic, paired=True,
                                   vectorized=False, n_resamples=resamples, method="percentile",
                                   rng=np.random.default_rng(seed)).confidence_interval

    def finite(value: float) -> float | None:  # a constant resample (e.g. every cell at chance) has no tau
        return float(value) if np.isfinite(value) else None
    return {"tau": finite(tau.statistic), "p_value": finite(tau.pvalue),
            "ci95": [finite(interval.low), finite(interval.high)]}


def show(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("NASNET_ZOO_TEST_DATA", ""),
                                                      "cifar-10-subset", "cifar-10-batches-py"))
    p.add_argument("--dataset", default="cifar10", help="cifar10 or folder")
    p.add_argument("--out", default=None, help="cache folder (default runs/bench/search_rank_<size>)")
    p.add_argument("--json", default=None, help="result file (default runs/bench/search_rank.json; "
                   "search_rank_<size>.json for other sizes)")
    p.add_argument("--genotypes", type=int, help="uniform samples (NASNet-A's blocks are added)")
    p.add_argument("--standalone-seeds", type=int)
    p.add_argument("--shared-steps", type=int)
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples")
    p.add_argument("--supernet-from", help="score with the supernet of this finished shared search (its "
                   "config.yaml's child settings replace the size's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE SearchConfig overrides (child.*, shared.*)")
    args = p.parse_args(argv)
    size = {**SIZES[args.size], **{k: v for k, v in vars(args).items()
                                   if k in ("genotypes", "standalone_seeds", "shared_steps", "bootstrap")
                                   and v is not None}}
    out = Path(args.out or f"runs/bench/search_rank_{args.size}")
    json_path = Path(args.json or ("runs/bench/search_rank.json" if args.size == "cpu"
                                   else f"runs/bench/search_rank_{args.size}.json"))
    overrides = [x for k, v in size["child"].items() for x in (f"child.{k}", str(v))]
    base = SearchConfig(reward="shared", data_dir=args.data_dir, dataset=args.dataset, seed=args.seed)
    if args.supernet_from:  # the supernet's shapes and the held-out split come from that search
        searched = load_config(SearchConfig(), Path(args.supernet_from) / CONFIG_NAME)
        base.child, base.shared, base.dataset = searched.child, searched.shared, searched.dataset
        overrides = [x for k, v in size["child"].items() if k in ("epochs", "train_size")  # stand-alone budget
                     for x in (f"child.{k}", str(v))]
    cfg = load_config(base, None, [*overrides, *args.opts])
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)

    data = ProxyData.load(cfg.data_dir, cfg.child, cfg.dataset)
    cells = cells_to_rank(size["genotypes"], args.seed)
    print(f"rank fidelity: {len(cells)} cells, child N={cfg.child.cells} F={cfg.child.filters} "
          f"{cfg.child.image_size}px, stand-alone {cfg.child.epochs} epoch(s) on {len(data.train_y)} images, "
          f"rewards on {len(data.val_y)} held-out images")
    alone, alone_seconds = standalone_accuracies(cells, data, cfg, size["standalone_seeds"], out, args.device)
    shared, shared_seconds = shared_accuracies(cells, data, cfg, size["shared_steps"], args.seed, out,
                                               args.device, args.supernet_from)
    alone_mean = alone.mean(axis=1)
    result: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": args.device, "threads": args.threads, "load_average": list(os.getloadavg())},
        "size": args.size, "cells": len(cells), "standalone_seeds": size["standalone_seeds"],
        "shared_steps": None if args.supernet_from else size["shared_steps"], "supernet_from": args.supernet_from,
        "child": vars(cfg.child), "dataset": cfg.dataset,
        "train_images": len(data.train_y), "val_images": len(data.val_y),
        "shared_vs_standalone": kendall(shared, alone_mean, size["bootstrap"], args.seed),
        "seconds": {"standalone_total": round(alone_seconds, 1), "shared": shared_seconds},
        "per_cell": [{"name": g.name, "standalone": alone[i].tolist(), "shared": float(shared[i]),
                      "genotype": g.to_dict()} for i, g in enumerate(cells)],
    }
    if size["standalone_seeds"] > 1:
        result["standalone_seed0_vs_seed1"] = kendall(alone[:, 0], alone[:, 1], size["bootstrap"], args.seed)
    atomic_write_json(json_path, result)

    print(f"{'cell':>16} | {'stand-alone':>11} | {'shared':>7}")
    for row, mean in zip(result["per_cell"], alone_mean):
        print(f"{row['name']:>16} | {mean:>11.4f} | {row['shared']:>7.4f}")
    for name in ("shared_vs_standalone", "standalone_seed0_vs_seed1"):
        if name in result:
            r = result[name]
            print(f"Kendall tau {name}: {show(r['tau'])} (95% bootstrap CI {show(r['ci95'][0])} .. "
                  f"{show(r['ci95'][1])}, p = {show(r['p_value'])})")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
