"""Eval-mode forward speed of our NASNet-A against Cadene's and timm's ports carrying the same weights.

For each model (mobile at 224, large at 331) and batch size, every contender runs in the same process,
interleaved (one forward of each per repetition, in rotating order), after a warm-up; we report the median
wall time and the median process CPU time per forward, and the speed-ups by both. On a shared machine run
with ``--threads 1``: CPU time then counts only the cycles this process computed, while wall time also counts
the time other jobs held the cores. References run in both memory formats
(``channels_last`` is worth ~2x for them on CPU), and our target compares against the fastest of them.
Outputs are compared too: a speed-up that changes the numbers does not count.

    python bench/backbone.py                       # mobile and large, batch 1 and 8
    python bench/backbone.py --models mobile --batch-sizes 1 --reps 20 --out runs/bench/backbone.json

Contenders: ``ours`` = ``optimize_for_inference(create_model(...))`` (BN folded, packed oneDNN convs, grouped
separable convs, channels_last); ``ours_plain`` = the unfused model as built (NCHW); ``cadene``/``timm`` and their
``_cl`` (channels_last) twins.
The references get random weights and random BN statistics, converted into ours with ``convert_state_dict``.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import nasnet_zoo
from nasnet_zoo.convert import convert_state_dict
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.testing import max_diff, randomize_batchnorm
from nasnet_zoo.utils.io import atomic_write_json

TARGETS = {"mobile": 1.3, "large": 1.2}  # ours vs the fastest reference (issue 2, item 11)
SIZES = {"mobile": 224, "large": 331}


def photos(size: int, count: int) -> tuple[torch.Tensor, str]:
    """COCO val photos from NASNET_ZOO_TEST_DATA (or ../shared/data) scaled to [-1, 1]; noise if absent."""
    root = Path(os.environ.get("NASNET_ZOO_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((root / "coco-tiny" / "val2017").glob("*.jpg"))
    if not files:
        return torch.randn(count, 3, size, size), "random noise (no coco-tiny found)"
    from PIL import Image
    arrays = [np.asarray(Image.open(files[i % len(files)]).convert("RGB").resize((size, size), Image.BILINEAR),
                         dtype=np.float32) for i in range(count)]
    batch = torch.from_numpy(np.stack(arrays) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    return batch, f"{count} coco-tiny val2017 photos"


def channels_last(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return lambda x: cl(x.contiguous(memory_format=torch.channels_last))


def ours_from(state: dict, name: str, padding: str, num_classes: int) -> nn.Module:
    model = nasnet_zoo.create_model(name, padding=padding, num_classes=num_classes).eval()
    result = model.load_state_dict(convert_state_dict(state, source="cadene"), strict=False)
    if result.unexpected_keys or any(not k.startswith("aux_head.") for k in result.missing_keys):
        raise RuntimeError(f"conversion mismatch: {result}")
    return model


def contenders(model: str) -> tuple[dict[str, Callable], dict[str, tuple[str, str]]]:
    """The timed callables, and which pairs must give equal outputs (reference, ours in its padding mode)."""
    from pretrainedmodels.models import nasnet as cadene_large
    from pretrainedmodels.models import nasnet_mobile as cadene_mobile
    runs: dict[str, Callable] = {}
    checks: dict[str, tuple[str, str]] = {}
    if model == "mobile":
        cadene = randomize_batchnorm(cadene_mobile.NASNetAMobile(num_classes=1000), seed=1)
        plain = ours_from(cadene.state_dict(), "nasnet_a_mobile", "tf", 1000)
        refs = {"cadene": cadene}
    else:
        import timm
        cadene = randomize_batchnorm(cadene_large.NASNetALarge(num_classes=1000), seed=2)
        timm_model = timm.create_model("nasnetalarge", pretrained=False).eval()
        timm_model.load_state_dict(cadene.state_dict())
        plain = ours_from(cadene.state_dict(), "nasnet_a_large", "tf", 1000)
        refs = {"cadene": cadene, "timm": timm_model}
        # timm pads its strided average pools differently: compare it with our timm-padding mode.
        runs_timm_mode = optimize_for_inference(ours_from(cadene.state_dict(), "nasnet_a_large", "timm", 1000))
        checks["timm"] = ("timm", "ours_timm_padding")
        runs["ours_timm_padding"] = runs_timm_mode
    runs = {"ours": optimize_for_inference(plain), "ours_plain": plain, **runs}
    for ref_name, ref in refs.items():
        runs[ref_name] = ref
        runs[f"{ref_name}_cl"] = channels_last(ref)
        checks.setdefault(ref_name, (ref_name, "ours"))
    return runs, checks


@torch.no_grad()
def bench_one(model: str, batch: int, reps: int, warmup: int) -> dict:
    runs, checks = contenders(model)
    x, source = photos(SIZES[model], batch)
    outputs = {name: fn(x) for name, fn in runs.items()}
    diffs = {ref: max_diff(outputs[ref], outputs[ours]) for ref, (ref, ours) in checks.items()}
    diffs["ours_vs_ours_plain"] = max_diff(outputs["ours"], outputs["ours_plain"])
    timed = [n for n in runs if n != "ours_timm_padding"]  # built only for the output check
    wall: dict[str, list[float]] = {n: [] for n in timed}
    cpu: dict[str, list[float]] = {n: [] for n in timed}
    for rep in range(warmup + reps):
        order = timed[rep % len(timed):] + timed[:rep % len(timed)]
        for name in order:
            w0, c0 = time.perf_counter(), time.process_time()
            runs[name](x)
            w1, c1 = time.perf_counter(), time.process_time()
            if rep >= warmup:
                wall[name].append(w1 - w0)
                cpu[name].append(c1 - c0)
    medians = {"wall": {n: statistics.median(v) for n, v in wall.items()},
               "cpu": {n: statistics.median(v) for n, v in cpu.items()}}
    references = [n for n in timed if not n.startswith("ours")]
    result: dict = {
        "model": f"nasnet_a_{model}", "batch": batch, "image_size": SIZES[model], "input": source,
        "reps": reps, "warmup": warmup, "target": TARGETS[model], "max_abs_output_diff": diffs,
    }
    for metric, times in medians.items():
        fastest = min(references, key=times.get)
        speedup = times[fastest] / times["ours"]
        result[metric] = {"median_s": times, "fastest_reference": fastest, "speedup_vs_fastest_reference": speedup,
                          "meets_target": speedup >= TARGETS[model]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SIZES), default=["mobile", "large"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions per contender (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/bench/backbone.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for model in args.models:
        for batch in args.batch_sizes:
            r = bench_one(model, batch, args.reps, args.warmup)
            results.append(r)
            print(f"{r['model']} batch {batch} ({r['input']}), max |output diff|: {r['max_abs_output_diff']}")
            for metric in ("wall", "cpu"):
                m = r[metric]
                times = ", ".join(f"{n} {1e3 * t:.0f}" for n, t in m["median_s"].items())
                print(f"  median {metric} ms per forward: {times}")
                print(f"    ours: {m['speedup_vs_fastest_reference']:.2f}x the fastest reference "
                      f"({m['fastest_reference']}), target {r['target']}x {'met' if m['meets_target'] else 'NOT met'}",
                      flush=True)
    report = {"benchmark": "backbone eval forward", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "results": results}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
