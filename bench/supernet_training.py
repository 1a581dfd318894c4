"""Does the NASNet supernet learn? Held-out accuracy of uniformly drawn children over supernet training (issue 23).

For each ``--variants`` entry, a fresh supernet (``SharedWeightEvaluator``: the one training step of a shared
search) at the ``shared_cpu`` size (16 px, F = 8, N = 1, real CIFAR-10, batch 64, SGD lr 0.05) trains for
``--steps`` minibatches on paths drawn by its sampler; every ``--every`` steps, ``--children`` fixed children,
drawn uniformly from the variant's space once, are scored with the shared weights on the same ``--eval-images``
held-out images, and their mean accuracy is the curve's point. Variants:

- ``reduced``: ENAS's 5 ops and the ``add`` combiner (the shipped ``configs/search/shared_cpu.yaml``), uniform;
- ``full``: the paper's 13 ops and both combiners, uniform;
- ``full_ops_add``: the paper's 13 ops with ``add`` only (which of the two restrictions matters), uniform;
- ``full_fair`` / ``reduced_fair``: the same spaces with FairNAS's strict fairness (every op once per step,
  gradients summed over the paths): each step costs one path per op, so these run ``--steps`` paths in all,
  not ``--steps`` steps (equal forward/backward count).

Results are cached per variant in ``--out-dir/supernet_training.json`` (a killed run continues with the next
variant) and plotted to ``supernet_training.png``.

    flock /tmp/nasnet-heavy.lock python bench/supernet_training.py          # ~30 min on one busy core
    python bench/supernet_training.py --steps 20 --every 10 --children 3 --eval-images 64 --out-dir /tmp/st
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.search.child import ProxyData
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.search.shared import SharedWeightEvaluator
from nasnet_zoo.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"
VARIANTS = {
    "reduced": {"controller.ops": "enas", "controller.combiners": "add", "shared.sampling": "uniform"},
    "full": {"controller.ops": "nasnet", "controller.combiners": "add,concat", "shared.sampling": "uniform"},
    "full_ops_add": {"controller.ops": "nasnet", "controller.combiners": "add", "shared.sampling": "uniform"},
    "reduced_fair": {"controller.ops": "enas", "controller.combiners": "add", "shared.sampling": "fair"},
    "full_fair": {"controller.ops": "nasnet", "controller.combiners": "add,concat", "shared.sampling": "fair"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--config-file", default=str(ROOT / "configs" / "search" / "shared_cpu.yaml"),
                   help="the child size and shared settings (the variants override the space and sampler)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=1500, help="supernet paths trained (uniform: steps)")
    p.add_argument("--every", type=int, default=300)
    p.add_argument("--children", type=int, default=20, help="fixed uniform children averaged per point")
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "figures"))
    return p.parse_args(argv)


def run_variant(name: str, args: argparse.Namespace) -> dict:
    overrides = [*[x for kv in VARIANTS[name].items() for x in kv], "data_dir", args.data_dir, "seed", str(args.seed),
                 "shared.eval_images", str(args.eval_images)]
    cfg = load_config(SearchConfig(), args.config_file, overrides)
    data = ProxyData.load(cfg.data_dir, cfg.child, dataset=cfg.dataset)
    evaluator = SharedWeightEvaluator(cfg, data)
    space = evaluator.space
    rng = np.random.default_rng([args.seed, 11])
    children = [space.to_genotype(space.random_decisions(rng)) for _ in range(args.children)]
    sampler = evaluator.uniform_sampler(0)
    paths_per_step = space.vocabulary_size("op") if cfg.shared.sampling == "fair" else 1
    points, paths, train_seconds, losses = [], 0, 0.0, []

    def point() -> None:
        scores = [evaluator.score(g) for g in children]
        points.append({"paths": paths, "steps": evaluator.step, "heldout_mean": float(np.mean(scores)),
                       "heldout_max": float(np.max(scores)), "heldout_min": float(np.min(scores)),
                       "train_loss": float(np.mean(losses[-50:])) if losses else None,
                       "train_seconds": train_seconds})
        print(f"  {name:13s} paths {paths:5d}  held-out mean {points[-1]['heldout_mean']:.3f} "
              f"(min {points[-1]['heldout_min']:.3f}, max {points[-1]['heldout_max']:.3f})  "
              f"loss {points[-1]['train_loss'] or float('nan'):.3f}  {train_seconds:.0f} s", flush=True)

    point()
    while paths < args.steps:
        tic = time.perf_counter()
        target = min(args.steps, paths + args.every)
        while paths < target:
            losses.append(evaluator.train_step(sampler())["loss"])
            paths += paths_per_step
        train_seconds += time.perf_counter() - tic
        point()
    return {"space": {"ops": list(space.ops), "combiners": list(space.combiners)}, "sampling": cfg.shared.sampling,
            "paths_per_step": paths_per_step, "seconds_per_path": train_seconds / max(paths, 1), "points": points}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results["variants"].items():
        ax.plot([p["paths"] for p in r["points"]], [p["heldout_mean"] for p in r["points"]], marker="o", label=name)
    ax.axhline(0.30, color="grey", ls="--", lw=0.8, label="goal 0.30")
    ax.axhline(0.10, color="grey", ls=":", lw=0.8, label="chance")
    ax.set_xlabel("paths trained (uniform: supernet steps)")
    ax.set_ylabel(f"held-out accuracy, mean of {results['conditions']['children']} uniform children")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "supernet_training.json"
    results = json.loads(path.read_text()) if path.exists() else {"variants": {}}
    results["conditions"] = {"threads": args.threads, "steps": args.steps, "children": args.children,
                             "eval_images": args.eval_images, "seed": args.seed, "config": args.config_file,
                             "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    for name in args.variants:
        if name in results["variants"] and results["variants"][name]["points"][-1]["paths"] >= args.steps:
            print(f"{name}: cached in {path}")
            continue
        load = os.getloadavg()[0]
        results["variants"][name] = run_variant(name, args) | {"load_at_start": load}
        atomic_write_json(path, results)
    plot(results, out / "supernet_training.png")
    print(f"wrote {path} and {out / 'supernet_training.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
