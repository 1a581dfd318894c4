"""Rank fidelity of the shared-weight reward (issue 23, item 4): does the supernet rank cells as training them
alone does?

The cells are ``--genotypes`` distinct cells drawn uniformly (seeded) from the space the shared search walks
(``--ops``, ``--combiners``: by default ENAS's 5 ops with ``add``, the space of configs/search/shared_cpu.yaml),
plus NASNet-A's blocks when that space holds them (its concat made the space's "unused states", so both rewards
score the very same architecture; with the ``enas`` ops it is outside: its reduction cell uses sep_conv_7x7).
Each is scored twice on the same images held out of the training split (``child.val_size``):

* stand-alone: the proxy child (``train_child``, what ``--reward proxy`` trains) trained from scratch at the
  size's budget, once per ``--standalone-seeds`` seed; Kendall's tau between seed 0 and seed 1 is the ceiling any
  cheaper reward can reach at this budget;
* shared: a supernet (``SharedWeightEvaluator``, shared settings from ``--config-file``) trained for
  ``--shared-steps`` minibatches with one uniformly sampled child per minibatch (as random search trains it), on
  every training image not held out as the shipped config does, then each cell scored with the shared weights.

Kendall's tau-b and Spearman's rho with 95% paired bootstrap intervals (``nasnet_zoo.search.rank_fidelity``)
between the shared score and the mean stand-alone accuracy, the same against each seed, the seed-to-seed ceiling,
and parameter count as a reference; written to ``--json`` with every figure's conditions and printed.

It runs in pieces, each skipping what is cached in ``--out``, so a killed run continues where it stopped:

* ``--part standalone``: fixes the cells (``cells.json``) and trains the stand-alone children, one line per
  (cell, seed) appended to ``standalone.jsonl``;
* ``--part shared``: trains the supernet in chunks (``supernet.pt``, written atomically after each) and scores
  the cells (``shared.json``);
* ``--part report``: the statistics, from the two caches only; ``--part all`` (default) runs the three.

    python bench/search_rank.py --part standalone --threads 1     # cpu size, hours of one core: in the background
    python bench/search_rank.py --part shared                     # then the supernet (a few minutes)
    python bench/search_rank.py --part report                     # docs/figures/search_rank.json and the table
    python bench/search_rank.py --size quick --out /tmp/rank      # smoke test, a minute
    python bench/search_rank.py --size gpu --data-dir PATH/cifar-10-batches-py --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.genotypes import NASNET_A, Genotype, GenotypeError
from nasnet_zoo.search.child import ProxyData, train_child
from nasnet_zoo.search.journal import genotype_key
from nasnet_zoo.search.rank_fidelity import rank_agreement
from nasnet_zoo.search.settings import SearchConfig
from nasnet_zoo.search.spaces import NASNetSpace, genotype_from_dict
from nasnet_zoo.utils.checkpoint import read_checkpoint
from nasnet_zoo.utils.io import append_jsonl, atomic_torch_save, atomic_write_json, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar-10-subset" / "cifar-10-batches-py"
SHARED_CONFIG = ROOT / "configs" / "search" / "shared_cpu.yaml"

#: Sizes: the child (the same network for both rewards), the stand-alone budget, the supernet's steps and the
#: training images it sees (0: every image not held out, as the shipped shared config trains).
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"genotypes": 5, "standalone_seeds": 2, "shared_steps": 20, "shared_train_size": 256,
              "bootstrap": 200,
              "child": {"epochs": 1, "train_size": 256, "val_size": 200, "image_size": 16, "num_conv_filters": 4,
                        "cells": 1, "batch_size": 32}},
    "cpu": {"genotypes": 100, "standalone_seeds": 2, "shared_steps": 1500, "shared_train_size": 0,
            "bootstrap": 2000,
            "child": {"epochs": 2, "train_size": 2000, "val_size": 1000, "image_size": 16, "num_conv_filters": 8,
                      "cells": 1, "batch_size": 64}},
    "gpu": {"genotypes": 100, "standalone_seeds": 2, "shared_steps": 10000, "shared_train_size": 0,
            "bootstrap": 5000,
            "child": {"epochs": 10, "train_size": 0, "val_size": 5000, "image_size": 32, "num_conv_filters": 16,
                      "cells": 2, "batch_size": 128}},
}
PARTS = ("standalone", "shared", "report", "all")
CELLS_NAME, STANDALONE_NAME, SUPERNET_NAME, SHARED_NAME = "cells.json", "standalone.jsonl", "supernet.pt", "shared.json"
#: Supernet steps between two checkpoints: a kill repeats at most this many.
CHUNK_STEPS = 250


def conditions(threads: int) -> dict[str, Any]:
    """What a timing depends on here: torch threads and the machine's load when it was taken."""
    return {"threads": threads, "load_average": [round(x, 2) for x in os.getloadavg()]}


def draw_cells(space: NASNetSpace, n: int, seed: int) -> list[Genotype]:
    """NASNet-A's blocks (search-space concat) when ``space`` holds them, then ``n`` distinct uniform cells."""
    cells: list[Genotype] = []
    try:
        cells.append(space.to_genotype(space.to_decisions(NASNET_A), name="NASNet-A blocks"))
    except GenotypeError:  # e.g. the enas ops: its reduction cell uses sep_conv_7x7
        pass
    rng = np.random.default_rng([seed, 0x5A4C])
    keys = {genotype_key(g) for g in cells}
    for i in range(n):
        genotype = space.to_genotype(space.random_decisions(rng), name=f"uniform-{i}")
        while genotype_key(genotype) in keys:  # a repeat would count one architecture twice
            genotype = space.to_genotype(space.random_decisions(rng), name=f"uniform-{i}")
        keys.add(genotype_key(genotype))
        cells.append(genotype)
    return cells


def fixed_cells(out: Path, space: NASNetSpace, n: int, seed: int) -> list[Genotype]:
    """The cells of this run, drawn once and kept in ``cells.json``: later pieces rank exactly these, whatever
    changes in the code that draws them."""
    spec = {"genotypes": n, "seed": seed, "num_blocks": space.num_blocks, "ops": list(space.ops),
            "combiners": list(space.combiners)}
    path = out / CELLS_NAME
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["spec"] != spec:
            raise SystemExit(f"error: {path} holds other cells ({saved['spec']}, asked {spec}); use another --out")
        return [genotype_from_dict(g) for g in saved["cells"]]  # type: ignore[misc]
    cells = draw_cells(space, n, seed)
    atomic_write_json(path, {"spec": spec, "cells": [g.to_dict() for g in cells]})
    return cells


def child_budget(cfg: SearchConfig) -> dict[str, Any]:
    """The child settings a stand-alone result depends on (the time limit only stops a child, it never changes one)."""
    return {k: v for k, v in vars(cfg.child).items() if k != "time_limit_s"}


def cached_standalone(out: Path, cfg: SearchConfig) -> dict[tuple[str, int], dict[str, Any]]:
    """Stand-alone results at this budget by (genotype key, seed). A setting added to the child later, absent from
    a cached line, does not void it."""
    path = out / STANDALONE_NAME
    budget = child_budget(cfg)
    rows = read_jsonl(path) if path.exists() else []
    return {(r["key"], r["seed"]): r for r in rows
            if all(k in budget and budget[k] == v for k, v in r["budget"].items())}


def run_standalone(cells: list[Genotype], data: ProxyData, cfg: SearchConfig, seeds: int, out: Path, device: str,
                   threads: int) -> None:
    """Train every (cell, seed) not yet cached, appending each result as soon as it is known."""
    cache = cached_standalone(out, cfg)
    todo = [(i, seed) for i, g in enumerate(cells) for seed in range(seeds) if (genotype_key(g), seed) not in cache]
    print(f"stand-alone: {len(cells) * seeds - len(todo)} of {len(cells) * seeds} children cached, {len(todo)} to "
          "train", flush=True)
    for done, (i, seed) in enumerate(todo, 1):
        genotype = cells[i]
        before = conditions(threads)
        result = train_child(genotype, data, cfg.child, device=device, seed=1000 * seed + i)
        if result.status != "ok":
            raise RuntimeError(f"stand-alone child {genotype.name} failed: {result.status} {result.reason}")
        append_jsonl(out / STANDALONE_NAME, {
            "key": genotype_key(genotype), "seed": seed, "name": genotype.name, "accuracy": result.reward,
            "params": result.info["params"], "seconds": round(result.seconds, 2), "budget": child_budget(cfg),
            "threads": threads, "load_average_before": before["load_average"],
            "load_average_after": conditions(threads)["load_average"], "device": device})
        print(f"  [{done}/{len(todo)}] stand-alone {genotype.name:>16} seed {seed}: {result.reward:.4f} "
              f"({result.seconds:.1f} s, load {os.getloadavg()[0]:.2f})", flush=True)


def uniform_sampler(space: NASNetSpace, seed: int, first_step: int) -> Callable[[], Genotype]:
    """The child of each supernet step, a pure function of (seed, step): a resumed training samples as the
    uninterrupted one would."""
    step = first_step

    def sample() -> Genotype:
        nonlocal step
        rng = np.random.default_rng([seed, 0x5EA4, step])
        step += 1
        return space.to_genotype(space.random_decisions(rng))
    return sample


def run_shared(cells: list[Genotype], data: ProxyData, cfg: SearchConfig, space: NASNetSpace, steps: int, out: Path,
               device: str, threads: int) -> None:
    """Train the supernet uniformly for ``steps`` (resuming from ``supernet.pt``, also a shorter training of the
    same supernet), then score every cell."""
    from nasnet_zoo.search.shared import SharedWeightEvaluator

    keys = [genotype_key(g) for g in cells]
    supernet = json.loads(json.dumps({"seed": cfg.seed, "shared": vars(cfg.shared), "child": vars(cfg.child),
                                      "controller": vars(cfg.controller)}))
    source = {"steps": steps, **supernet}
    path = out / SHARED_NAME
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["source"] == source and saved["keys"] == keys:
            print("shared: scores cached")
            return
    evaluator = SharedWeightEvaluator(cfg, data, device=device)
    ckpt_path = out / SUPERNET_NAME
    done, train_seconds, chunks = 0, 0.0, []
    if ckpt_path.exists():
        ckpt = read_checkpoint(ckpt_path, written_by="bench/search_rank.py")  # weights only: nothing in it runs
        if ckpt["supernet"] == supernet and ckpt["evaluator"]["step"] <= steps:  # more steps continue the same training
            evaluator.load_state_dict(ckpt["evaluator"])
            done, train_seconds, chunks = evaluator.step, ckpt["train_seconds"], ckpt["chunks"]
            print(f"shared: resumed the supernet at step {done}")
    while done < steps:
        n = min(CHUNK_STEPS, steps - done)
        before = conditions(threads)
        tic = time.perf_counter()
        logs = evaluator.train(n, uniform_sampler(space, cfg.seed, done))
        seconds = time.perf_counter() - tic
        done, train_seconds = done + n, train_seconds + seconds
        chunks.append({"steps": [done - n, done], "seconds": round(seconds, 1),
                       "mean_loss": round(float(np.mean([x["loss"] for x in logs])), 4),
                       "mean_train_accuracy": round(float(np.mean([x["accuracy"] for x in logs])), 4),
                       "skipped_steps": int(sum(x["skipped"] for x in logs)),
                       "load_average_before": before["load_average"],
                       "load_average_after": conditions(threads)["load_average"]})
        atomic_torch_save({"supernet": supernet, "evaluator": evaluator.state_dict(),
                           "train_seconds": train_seconds, "chunks": chunks}, ckpt_path)
        print(f"  supernet step {done}/{steps}: {seconds / n:.3f} s/step, loss {chunks[-1]['mean_loss']}, train "
              f"accuracy {chunks[-1]['mean_train_accuracy']}, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    before = conditions(threads)
    tic = time.perf_counter()
    accuracy = [evaluator.score(g) for g in cells]
    score_seconds = time.perf_counter() - tic
    atomic_write_json(path, {
        "source": source, "keys": keys, "accuracy": accuracy, "threads": threads, "device": device,
        "train_images": len(data.train_y), "scored_images": len(evaluator.eval_y),
        "seconds": {"train": round(train_seconds, 1), "score": round(score_seconds, 1),
                    "score_per_cell": round(score_seconds / len(cells), 3)},
        "train_chunks": chunks, "score_load_average": [before["load_average"], conditions(threads)["load_average"]]})
    print(f"shared: trained {train_seconds:.0f} s, scored {len(cells)} cells in {score_seconds:.0f} s", flush=True)


def seconds_summary(values: list[float]) -> dict[str, float]:
    return {"total": round(float(np.sum(values)), 1), "mean": round(float(np.mean(values)), 2),
            "median": round(float(np.median(values)), 2), "min": round(float(np.min(values)), 2),
            "max": round(float(np.max(values)), 2)}


def report(cells: list[Genotype], cfg: SearchConfig, size: dict[str, Any], out: Path,
           json_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The statistics from the two caches; refuses while either is incomplete."""
    seeds = size["standalone_seeds"]
    cache = cached_standalone(out, cfg)
    missing = sum((genotype_key(g), s) not in cache for g in cells for s in range(seeds))
    if missing:
        raise SystemExit(f"error: {missing} stand-alone children are not trained yet: run --part standalone")
    if not (out / SHARED_NAME).exists():
        raise SystemExit("error: no shared scores yet: run --part shared")
    shared_run = json.loads((out / SHARED_NAME).read_text())
    if shared_run["keys"] != [genotype_key(g) for g in cells] or shared_run["source"]["steps"] != size["shared_steps"]:
        raise SystemExit(f"error: {out / SHARED_NAME} scored other cells or steps: run --part shared")
    rows = [[cache[genotype_key(g), s] for s in range(seeds)] for g in cells]
    alone = np.array([[r["accuracy"] for r in row] for row in rows])
    params = np.array([row[0]["params"] for row in rows], dtype=float)
    shared = np.array(shared_run["accuracy"])
    mean = alone.mean(axis=1)

    def agree(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        return rank_agreement(x, y, bootstrap=size["bootstrap"], seed=args.seed)

    figures = {"shared_vs_standalone_mean": agree(shared, mean),
               **{f"shared_vs_standalone_seed{s}": agree(shared, alone[:, s]) for s in range(seeds)},
               "params_vs_standalone_mean": agree(params, mean)}
    if seeds > 1:
        figures["standalone_seed0_vs_seed1"] = agree(alone[:, 0], alone[:, 1])
    records = [r for row in rows for r in row]
    loads = [x for r in records for x in (r["load_average_before"][0], r["load_average_after"][0])]
    result: dict[str, Any] = {
        "what": "rank fidelity of the shared-weight reward against stand-alone training, NASNet space (issue 23 "
                "item 4)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "size": args.size, "cells": len(cells), "nasnet_a_included": cells[0].name == "NASNet-A blocks",
        "space": json.loads((out / CELLS_NAME).read_text())["spec"], "dataset": cfg.dataset,
        "figures": figures,
        "standalone": {"seeds": seeds, "child": vars(cfg.child), "train_images": cfg.child.train_size,
                       "scored_images": cfg.child.val_size, "device": records[0]["device"],
                       "threads": sorted({r["threads"] for r in records}),
                       "load_average_1min": [min(loads), max(loads)],
                       "seconds_per_child": seconds_summary([r["seconds"] for r in records]),
                       "accuracy": {"min": float(alone.min()), "max": float(alone.max()), "mean": float(alone.mean())}},
        "shared": {"steps": size["shared_steps"], "sampling": "uniform, one path per step (this bench)",
                   "shared_settings": shared_run["source"]["shared"],
                   "controller": shared_run["source"]["controller"], "child": shared_run["source"]["child"],
                   "train_images": shared_run["train_images"], "scored_images": shared_run["scored_images"],
                   "device": shared_run["device"], "threads": shared_run["threads"],
                   "seconds": shared_run["seconds"], "train_chunks": shared_run["train_chunks"],
                   "score_load_average": shared_run["score_load_average"],
                   "accuracy": {"min": float(shared.min()), "max": float(shared.max()), "mean": float(shared.mean())}},
        "per_cell": [{"name": g.name, "params": int(params[i]), "standalone": alone[i].tolist(),
                      "shared": float(shared[i]), "genotype": genotype_key(g)} for i, g in enumerate(cells)],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, result)
    print_table(result)
    print(f"wrote {json_path}")
    return result


def show(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.3f}"


def print_table(result: dict[str, Any]) -> None:
    print(f"{'cell':>16} | {'params':>7} | {'stand-alone (seeds)':>22} | {'shared':>7}")
    for row in result["per_cell"]:
        seeds = " ".join(f"{a:.4f}" for a in row["standalone"])
        print(f"{row['name']:>16} | {row['params']:>7} | {seeds:>22} | {row['shared']:>7.4f}")
    print(f"\n{'figure':>32} | {'n':>3} | {'Kendall tau [95% CI]':>26} | {'Spearman [95% CI]':>26}")
    for name, r in result["figures"].items():
        print(f"{name:>32} | {r['n']:>3} | {show(r['kendall'])} [{show(r['kendall_lo'])}, {show(r['kendall_hi'])}]"
              f"{'':>3} | {show(r['spearman'])} [{show(r['spearman_lo'])}, {show(r['spearman_hi'])}]")
    alone, shared = result["standalone"], result["shared"]
    print(f"stand-alone: {alone['seconds_per_child']} s per child, threads {alone['threads']}, load "
          f"{alone['load_average_1min']}; shared: {shared['seconds']} s, threads {shared['threads']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=PARTS, default="all", help="which piece to run (each skips what is cached)")
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--dataset", default="cifar10", help="cifar10 or folder")
    p.add_argument("--out", default=None, help="cache folder (default runs/search_rank_<size>)")
    p.add_argument("--json", default=None, help="result file (default docs/figures/search_rank.json for the cpu "
                   "size, OUT/search_rank.json for the others)")
    p.add_argument("--config-file", default=str(SHARED_CONFIG), help="the shared search's settings (shared.*)")
    p.add_argument("--ops", default="enas", help="op vocabulary of the space: nasnet, enas or op names")
    p.add_argument("--combiners", default="add", help="combiners of the space, e.g. add or add,concat")
    p.add_argument("--genotypes", type=int, help="uniform cells (NASNet-A's blocks are added when in the space)")
    p.add_argument("--standalone-seeds", type=int)
    p.add_argument("--shared-steps", type=int)
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE SearchConfig overrides (child.*, shared.*)")
    args = p.parse_args(argv)
    size = {**SIZES[args.size], **{k: v for k, v in vars(args).items()
                                   if k in ("genotypes", "standalone_seeds", "shared_steps", "bootstrap")
                                   and v is not None}}
    out = ROOT / "runs" / f"search_rank_{args.size}" if args.out is None else Path(args.out)
    json_path = Path(args.json) if args.json else (ROOT / "docs" / "figures" / "search_rank.json"
                                                   if args.size == "cpu" else out / "search_rank.json")
    child = [x for k, v in size["child"].items() for x in (f"child.{k}", str(v))]
    space_keys = ["controller.ops", args.ops, "controller.combiners", args.combiners]
    # stand-alone: the default NASNet child at the size's budget; shared: the shipped search's settings with the
    # same network, the same held-out images, every other training image and the same space
    cfg = load_config(SearchConfig(data_dir=args.data_dir, dataset=args.dataset, seed=args.seed), None,
                      [*child, *space_keys, *args.opts])
    shared_cfg = load_config(SearchConfig(), args.config_file,
                             [*child, "child.train_size", str(size["shared_train_size"]), *space_keys,
                              "reward", "shared", "data_dir", args.data_dir, "dataset", args.dataset,
                              "seed", str(args.seed), *args.opts])
    space = NASNetSpace(cfg.controller.num_blocks, cfg.controller.ops, cfg.controller.combiners)
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)

    cells = fixed_cells(out, space, size["genotypes"], args.seed)
    print(f"rank fidelity: {len(cells)} cells of the NASNet space (ops {', '.join(space.ops)}; combiners "
          f"{', '.join(space.combiners)}; NASNet-A {'included' if cells[0].name == 'NASNet-A blocks' else 'outside'})"
          f", child N={cfg.child.cells} F={cfg.child.num_conv_filters} {cfg.child.image_size}px", flush=True)
    if args.part in ("standalone", "all"):
        data = ProxyData.load(cfg.data_dir, cfg.child, cfg.dataset)
        run_standalone(cells, data, cfg, size["standalone_seeds"], out, args.device, args.threads)
    if args.part in ("shared", "all"):
        shared_data = ProxyData.load(shared_cfg.data_dir, shared_cfg.child, shared_cfg.dataset)
        run_shared(cells, shared_data, shared_cfg, space, size["shared_steps"], out, args.device, args.threads)
    if args.part in ("report", "all"):
        report(cells, cfg, size, out, json_path, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
