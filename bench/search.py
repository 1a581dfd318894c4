"""Search benchmarks (issue 3, items 7 and 9), all through the real ``SearchRun`` machinery.

1. Oracle: PPO against random search, ``--seeds`` x ``--children`` children each, reward = fraction of the 50
   decisions that match a hidden target genotype (no training). Prints the running-mean and best-so-far curves
   side by side and draws them (``oracle_rewards.png``). REFERENCE: PPO 0.57-0.63 over its last 200 of 2,000
   children, random 0.24.
2. Throughput: a real proxy search on CIFAR-10 (tiny children of a few seconds) with 1 and then 2 local workers:
   children per hour side by side, and the controller's share of wall time (sampling + PPO updates +
   checkpoints; target under 2% when a child trains for a second or more).
3. Cost of weight sharing (issue 14, item 4): children evaluated per hour by a real shared-weight search and by
   real proxy searches (stand-alone children, one local worker) on the same machine, the same child network
   (N, F, image size, batch) and the same data, one torch thread each. The proxy runs at each ``--proxy-budget``
   (training images x epochs): the tiny child of part 2 and the stand-alone budget that bench/search_rank.py
   ranks cells with on this CPU. Target: the shared search evaluates at least 100x the children per hour.

    python bench/search.py --out runs/bench/search --data-dir ../shared/data/cifar-10-subset/cifar-10-batches-py
    python bench/search.py --skip-oracle --skip-throughput --data-dir ...      # part 3 only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasnet_zoo.search.child import ChildConfig
from nasnet_zoo.search.report import plot_rewards, running_mean
from nasnet_zoo.search.runner import SearchRun, run_search
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.search.supernet import SharedConfig
from nasnet_zoo.utils.io import atomic_write_json, read_jsonl

CHECKPOINTS = (200, 500, 1000, 1500, 2000)


def oracle(out: Path, seeds: int, children: int) -> dict:
    curves: dict[str, list[np.ndarray]] = {"ppo": [], "random": []}
    seconds: dict[str, list[float]] = {"ppo": [], "random": []}
    for strategy in curves:
        for seed in range(seeds):
            folder = out / "oracle" / strategy / f"seed{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            cfg = SearchConfig(strategy=strategy, reward="oracle", backend="inline", children=children, seed=seed,
                               output_dir=str(folder))
            start = time.perf_counter()
            SearchRun(cfg, progress=False).run()
            seconds[strategy].append(time.perf_counter() - start)
            curves[strategy].append(np.array([r["reward"] for r in read_jsonl(folder / "journal.jsonl")]))
    plot_rewards(out / "oracle", out / "oracle_rewards.png", window=200)

    print(f"\nOracle reward, {seeds} seeds x {children} children (mean over seeds; window 200)")
    print(f"{'children':>9} | {'PPO mean':>9} {'PPO best':>9} | {'random mean':>11} {'random best':>11}")
    result = {"children": children, "seeds": seeds, "curves": {}}
    for n in [c for c in CHECKPOINTS if c <= children] or [children]:
        row = {}
        for strategy, runs in curves.items():
            row[f"{strategy}_mean"] = float(np.mean([running_mean(r, 200)[n - 1] for r in runs]))
            row[f"{strategy}_best"] = float(np.mean([r[:n].max() for r in runs]))
        result["curves"][n] = row
        print(f"{n:>9} | {row['ppo_mean']:>9.3f} {row['ppo_best']:>9.3f} | {row['random_mean']:>11.3f} "
              f"{row['random_best']:>11.3f}")
    for strategy, runs in curves.items():
        result[strategy] = {"last200_mean_per_seed": [float(r[-200:].mean()) for r in runs],
                            "best_per_seed": [float(r.max()) for r in runs],
                            "seconds_per_run": [round(s, 1) for s in seconds[strategy]]}
    ppo, rnd = result["ppo"], result["random"]
    result["ppo_beats_random"] = bool(min(ppo["last200_mean_per_seed"]) > max(rnd["last200_mean_per_seed"]) + 0.1
                                      and min(ppo["best_per_seed"]) > max(rnd["best_per_seed"]))
    print(f"PPO last-200 mean per seed {ppo['last200_mean_per_seed']}, random {rnd['last200_mean_per_seed']}")
    print(f"PPO best per seed {ppo['best_per_seed']}, random {rnd['best_per_seed']}")
    return result


def throughput(out: Path, data_dir: str, children: int, child: ChildConfig, threads: int) -> dict:
    result = {"child": child.__dict__, "children": children, "worker_threads": threads, "runs": {}}
    for workers in (1, 2):
        folder = out / "throughput" / f"workers{workers}"
        shutil.rmtree(folder, ignore_errors=True)
        cfg = SearchConfig(strategy="ppo", reward="proxy", data_dir=data_dir, backend="local", workers=workers,
                           worker_threads=threads, children=children, output_dir=str(folder),
                           child=ChildConfig(**child.__dict__))
        summary = SearchRun(cfg, progress=False).run()
        records = read_jsonl(folder / "journal.jsonl")
        trained = [r["seconds"] for r in records if r["status"] != "duplicate"]
        result["runs"][workers] = {
            "wall_seconds": round(summary["wall_seconds"], 1),
            "children_per_hour": round(3600 * len(records) / summary["wall_seconds"], 1),
            "mean_child_seconds": round(float(np.mean(trained)), 2),
            "controller_seconds": round(summary["controller_seconds"], 3),
            "controller_overhead_pct": round(summary["controller_overhead_pct"], 3),
            "statuses": sorted({r["status"] for r in records}),
        }
    one, two = result["runs"][1], result["runs"][2]
    result["speedup_2_workers"] = round(two["children_per_hour"] / one["children_per_hour"], 2)
    print(f"\nProxy search throughput, {children} children (child: {child.train_size} images x {child.epochs} "
          f"epochs at {child.image_size}px, {child.num_conv_filters} filters, {child.cells} cells/stack)")
    print(f"{'workers':>7} | {'children/hour':>13} {'s per child':>11} {'wall s':>7} {'controller %':>12}")
    for workers, run in result["runs"].items():
        print(f"{workers:>7} | {run['children_per_hour']:>13.1f} {run['mean_child_seconds']:>11.2f} "
              f"{run['wall_seconds']:>7.1f} {run['controller_overhead_pct']:>12.3f}")
    print(f"2 workers / 1 worker: {result['speedup_2_workers']}x")
    return result


def cost(out: Path, data_dir: str, child: ChildConfig, shared: SharedConfig, shared_children: int,
         budgets: list[tuple[int, int]], proxy_children: int) -> dict:
    """Children per hour: one shared-weight search against proxy searches at each (train images, epochs)."""
    result: dict = {"child": {k: getattr(child, k) for k in ("num_conv_filters", "cells", "image_size", "batch_size",
                                                                 "val_size", "lr")},
                    "shared_settings": shared.__dict__ | {"children": shared_children}, "proxy": []}
    folder = out / "cost" / "shared"
    shutil.rmtree(folder, ignore_errors=True)
    cfg = SearchConfig(strategy="ppo", reward="shared", data_dir=data_dir, children=shared_children,
                       output_dir=str(folder), child=ChildConfig(**child.__dict__), shared=SharedConfig(**shared.__dict__))
    summary = run_search(cfg, progress=False)
    records = read_jsonl(folder / "journal.jsonl")
    result["shared"] = {"children": len(records), "wall_seconds": round(summary["wall_seconds"], 1),
                        "children_per_hour": round(3600 * len(records) / summary["wall_seconds"], 1),
                        "train_steps": summary["train_steps"], "train_seconds": round(summary["train_seconds"], 1),
                        "mean_reward_seconds": round(float(np.mean([r["seconds"] for r in records])), 4),
                        "mean_reward_last_100": round(float(np.mean([r["reward"] for r in records[-100:]])), 4)}
    for train_size, epochs in budgets:
        folder = out / "cost" / f"proxy_{train_size}x{epochs}"
        shutil.rmtree(folder, ignore_errors=True)
        budget = ChildConfig(**(child.__dict__ | {"train_size": train_size, "epochs": epochs}))
        cfg = SearchConfig(strategy="ppo", reward="proxy", data_dir=data_dir, backend="local", workers=1,
                           worker_threads=1, children=proxy_children, output_dir=str(folder), child=budget)
        summary = SearchRun(cfg, progress=False).run()
        records = read_jsonl(folder / "journal.jsonl")
        per_hour = 3600 * len(records) / summary["wall_seconds"]
        result["proxy"].append({"train_size": train_size, "epochs": epochs, "children": len(records),
                                "wall_seconds": round(summary["wall_seconds"], 1),
                                "children_per_hour": round(per_hour, 1),
                                "mean_child_seconds": round(float(np.mean([r["seconds"] for r in records])), 2),
                                "mean_reward": round(float(np.mean([r["reward"] for r in records])), 4),
                                "shared_speedup": round(result["shared"]["children_per_hour"] / per_hour, 1)})
    print(f"\nChildren evaluated per hour, same machine, child N={child.cells} F={child.num_conv_filters} "
          f"{child.image_size}px batch {child.batch_size}, 1 torch thread")
    print(f"{'reward':<34} | {'children/hour':>13} {'s per child':>11} | {'shared / this':>13}")
    sh = result["shared"]
    print(f"{'shared (' + str(shared.eval_images) + ' eval images per child)':<34} | "
          f"{sh['children_per_hour']:>13.1f} {3600 / sh['children_per_hour']:>11.3f} | {'':>13}")
    for run in result["proxy"]:
        label = f"proxy ({run['train_size']} images x {run['epochs']} epochs)"
        print(f"{label:<34} | {run['children_per_hour']:>13.1f} {3600 / run['children_per_hour']:>11.2f} | "
              f"{run['shared_speedup']:>12.1f}x")
    result["meets_100x"] = all(run["shared_speedup"] >= 100 for run in result["proxy"][-1:])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench/search", help="folder for search.json, the plot and the runs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--children", type=int, default=2000, help="oracle children per run")
    p.add_argument("--data-dir", default=os.path.join(os.environ.get("NASNET_ZOO_TEST_DATA", ""),
                                                      "cifar-10-subset", "cifar-10-batches-py"))
    p.add_argument("--proxy-children", type=int, default=40, help="children per throughput run (2 PPO updates)")
    p.add_argument("--child-train-size", type=int, default=256)
    p.add_argument("--child-image-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (1: on a shared machine "
                   "extra threads spin and make timings meaningless)")
    p.add_argument("--skip-oracle", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--shared-children", type=int, default=200, help="children of the shared search (part 3)")
    p.add_argument("--cost-proxy-children", type=int, default=4, help="children per proxy budget (part 3)")
    p.add_argument("--proxy-budget", nargs="+", default=["256x1", "2000x2"], metavar="IMAGESxEPOCHS",
                   help="stand-alone budgets of part 3; the last one is held to the 100x target")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "search.json"  # a run that skips a part keeps that part's earlier figures
    report = json.loads(previous.read_text()) if previous.exists() else {}
    report |= {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "cuda": torch.cuda.is_available()}}
    if not args.skip_oracle:
        report["oracle"] = oracle(out, args.seeds, args.children)
    if not args.skip_throughput:
        child = ChildConfig(epochs=1, train_size=args.child_train_size, val_size=500, num_conv_filters=8, cells=1,
                            image_size=args.child_image_size, batch_size=32, lr=0.05)
        report["throughput"] = throughput(out, args.data_dir, args.proxy_children, child, args.threads)
    if not args.skip_cost:
        child = ChildConfig(train_size=0, val_size=1000, num_conv_filters=8, cells=1, image_size=16, batch_size=64, lr=0.05)
        budgets = [tuple(int(v) for v in b.lower().split("x")) for b in args.proxy_budget]
        report["cost"] = cost(out, args.data_dir, child, SharedConfig(threads=args.threads), args.shared_children,
                              budgets, args.cost_proxy_children)  # type: ignore[arg-type]
    atomic_write_json(out / "search.json", report)
    print(f"\nwrote {out / 'search.json'}" + ("" if args.skip_oracle else f" and {out / 'oracle_rewards.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
