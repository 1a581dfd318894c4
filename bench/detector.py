"""Training and inference speed of fasterrcnn_nasnet_a_mobile_fpn against torchvision's
fasterrcnn_mobilenet_v3_large_fpn, in one run, at the same image size and batch, with FLOPs beside them.

Both detectors are built untrained (no downloads) with the same resize (``min_size = max_size = --image-size``),
FPN width 256 and 1024-wide box head (torchvision's defaults, which ours mirror). The contenders alternate
within each repetition so that machine load hits both alike; medians are reported.

    python bench/detector.py                                  # 320 px, train batch 2, 5 reps
    python bench/detector.py --image-size 512 --reps 10 --out runs/bench/detector.json

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; RoIAlign and NMS are
not counted), for one eval forward of one image and for one training step (forward + backward) of the batch.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

from nasnet_zoo.detection import build_detector
from nasnet_zoo.utils.io import atomic_write_json


def contenders(size: int, num_classes: int) -> dict[str, Callable[[], nn.Module]]:
    common = dict(min_size=size, max_size=size)
    return {
        "fasterrcnn_nasnet_a_mobile_fpn": lambda: build_detector("fasterrcnn_nasnet_a_mobile_fpn",
                                                                 num_classes=num_classes, **common),
        "fasterrcnn_mobilenet_v3_large_fpn": lambda: fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes, **common),
    }


def batch(size: int, count: int, seed: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Random images with three boxes each (speed does not depend on pixel values)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(count)]
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.6], [0.2, 0.6, 0.6, 0.95]]) * size
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([1, 2, 3])} for _ in range(count)]
    return images, targets


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images, targets) -> None:
    loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def flops(fn: Callable[[], None]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=2, help="training batch")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="runs/bench/detector.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, targets = batch(args.image_size, args.batch_size, 0)
    probe = images[:1]
    models = {name: make() for name, make in contenders(args.image_size, 91).items()}
    optimizers = {name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
                  for name, m in models.items()}
    results: dict[str, dict] = {}
    for name, model in models.items():
        model.train()
        train_flops = flops(lambda: sum(model(images, targets).values()).backward())
        model.eval()
        with torch.no_grad():
            eval_flops = flops(lambda: model(probe))
        results[name] = {"params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                         "train_step_GFLOPs": train_flops / 1e9, "eval_GFLOPs_per_image": eval_flops / 1e9,
                         "train_s": [], "eval_s": []}
    for rep in range(args.warmup + args.reps):
        order = list(models) if rep % 2 == 0 else list(reversed(models))
        for name in order:
            model = models[name]
            model.train()
            start = time.perf_counter()
            train_step(model, optimizers[name], images, targets)
            train_time = time.perf_counter() - start
            model.eval()
            with torch.no_grad():
                start = time.perf_counter()
                model(probe)
                eval_time = time.perf_counter() - start
            if rep >= args.warmup:
                results[name]["train_s"].append(train_time)
                results[name]["eval_s"].append(eval_time)
    for r in results.values():
        r["train_iter_per_s"] = 1.0 / statistics.median(r.pop("train_s"))
        r["eval_latency_ms"] = 1000 * statistics.median(r.pop("eval_s"))
    ours, ref = results["fasterrcnn_nasnet_a_mobile_fpn"], results["fasterrcnn_mobilenet_v3_large_fpn"]
    report = {"image_size": args.image_size, "train_batch": args.batch_size, "eval_batch": 1, "reps": args.reps,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "results": results,
              "ratios_ours_over_reference": {
                  "train_iter_per_s": ours["train_iter_per_s"] / ref["train_iter_per_s"],
                  "eval_latency": ours["eval_latency_ms"] / ref["eval_latency_ms"],
                  "eval_GFLOPs": ours["eval_GFLOPs_per_image"] / ref["eval_GFLOPs_per_image"]}}
    atomic_write_json(Path(args.out), report)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
