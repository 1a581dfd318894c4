"""Training and inference speed of fasterrcnn_nasnet_a_mobile_fpn against torchvision's
fasterrcnn_mobilenet_v3_large_fpn, in one run, at the same image size and batch, with FLOPs beside them;
then a latency table at 320 and 512 px with equal proposal counts: ours eager, ours fused
(``optimize_for_inference``), ours in onnxruntime, and torchvision's detector eager and exported to ONNX the
same way (``nasnet_zoo.onnx.export_detector``). Ours runs in two FPN layouts: the default (strides 4-32, as
detectron2) and "ours 16-32", torchvision's own mobile layout (``MOBILE_LAYOUT``), so that the last row pair
compares backbones with everything else equal. Every ratio is like for like: ours in onnxruntime against
torchvision in onnxruntime, ours eager (and fused, which is eager PyTorch) against torchvision eager; the
mixed ratio (ours in onnxruntime against torchvision eager) is printed only as such.

Both detectors are built untrained (no downloads) with the same resize (``min_size = max_size = --image-size``),
FPN width 256 and 1024-wide box head (torchvision's defaults, which ours mirror). The contenders alternate
within each repetition so that machine load hits both alike; medians are reported.

    python bench/detector.py                                  # 320 px, train batch 2, 5 reps
    python bench/detector.py --image-size 512 --reps 10 --out runs/bench/detector.json
    python bench/detector.py --latency-sizes 320 512 --proposals 1000 --latency-reps 15

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
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.onnx import OnnxDetector, export_detector
from nasnet_zoo.onnx.parity import synthetic_image
from nasnet_zoo.utils.io import atomic_write_json

OURS, REFERENCE = "fasterrcnn_nasnet_a_mobile_fpn", "fasterrcnn_mobilenet_v3_large_fpn"
#: torchvision's mobile FPN layout (its ``fasterrcnn_mobilenet_v3_large_fpn``): pyramid on the stride-16 and
#: stride-32 maps plus a pooled level, all five anchor sizes on each level.
MOBILE_LAYOUT = dict(out_indices=(3, 4), anchor_sizes=[(32, 64, 128, 256, 512)] * 3)


def contenders(size: int, num_classes: int) -> dict[str, Callable[[], nn.Module]]:
    common = dict(min_size=size, max_size=size)
    return {
        "fasterrcnn_nasnet_a_mobile_fpn": lambda: build_detector("fasterrcnn_nasnet_a_mobile_fpn",
                                                                 num_classes=num_classes, **common),
        "fasterrcnn_mobilenet_v3_large_fpn": lambda: fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes, **common),
    }


def latency_contenders(size: int, proposals: int, threads: int, workdir: Path) -> dict[str, Callable[[], object]]:
    """name -> a zero-argument call that runs one image through that contender (built once, here)."""
    rpn = dict(rpn_pre_nms_top_n_test=proposals, rpn_post_nms_top_n_test=proposals)
    common = dict(min_size=size, max_size=size, **rpn)
    torch.manual_seed(0)
    models = {
        "ours": build_detector(OURS, num_classes=91, **common),
        "ours 16-32": build_detector(OURS, num_classes=91, **MOBILE_LAYOUT, **common),
        "torchvision": fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91,
                                                         **common),
    }
    image = synthetic_image(size, size, seed=5)
    tensor = [torch.from_numpy(image).permute(2, 0, 1).float() / 255.0]
    calls: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        model.eval()
        onnx_path = export_detector(model, workdir / f"{name.replace(' ', '_')}_{size}.onnx", model_name=name,
                                    class_names=[str(i) for i in range(91)], example_size=(size, size))
        session = OnnxDetector(onnx_path, threads=threads)
        calls[f"{name} eager"] = (lambda m: lambda: m(tensor))(model)
        if name != "torchvision":
            calls[f"{name} fused"] = (lambda f: lambda: f(tensor))(optimize_for_inference(model))
        calls[f"{name} onnxruntime"] = (lambda s: lambda: s.raw(image))(session)
    return calls


def like_for_like(name: str, contenders: list[str]) -> str:
    """The torchvision contender that ``name`` is compared with: the same runtime (onnxruntime with onnxruntime,
    PyTorch with PyTorch: our fused detector is eager PyTorch, so it faces torchvision's eager one)."""
    runtime = name.rsplit(" ", 1)[-1]
    same = f"torchvision {runtime}"
    return same if same in contenders else "torchvision eager"


def latency_table(sizes: list[int], proposals: int, reps: int, warmup: int, workdir: Path) -> dict:
    """Median latency per contender and size, contenders interleaved (order reversed every other rep); each
    contender's speed is given against torchvision's in the same runtime and, separately, against its eager."""
    table: dict[str, dict] = {}
    threads = torch.get_num_threads()
    for size in sizes:
        calls = latency_contenders(size, proposals, threads, workdir)
        times: dict[str, list[float]] = {name: [] for name in calls}
        with torch.inference_mode():
            for rep in range(warmup + reps):
                for name in (list(calls) if rep % 2 == 0 else list(reversed(calls))):
                    start = time.perf_counter()
                    calls[name]()
                    if rep >= warmup:
                        times[name].append(time.perf_counter() - start)
        medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
        table[str(size)] = {
            name: {"ms": round(ms, 2), "reference": like_for_like(name, list(medians)),
                   "speedup_like_for_like": round(medians[like_for_like(name, list(medians))] / ms, 3),
                   "torchvision_eager_over_this": round(medians["torchvision eager"] / ms, 3)}
            for name, ms in medians.items()}
    return {"proposals": proposals, "reps": reps, "threads": threads, "table": table}


def print_latency_table(report: dict) -> None:
    sizes = list(report["table"])
    print(f"\nlatency per image, ms (median of {report['reps']}, {report['threads']} threads, "
          f"{report['proposals']} proposals); in brackets: speed against torchvision in the same runtime "
          "(onnxruntime with onnxruntime, PyTorch with eager PyTorch)")
    print("| contender | " + " | ".join(f"{s} px" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name in report["table"][sizes[0]]:
        cells = [f"{report['table'][s][name]['ms']:.1f} ({report['table'][s][name]['speedup_like_for_like']:.2f}x)"
                 for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for size in sizes:
        row = report["table"][size]
        for ours in ("ours", "ours 16-32"):
            eager, fused, onnx = (row[f"{ours} {runtime}"] for runtime in ("eager", "fused", "onnxruntime"))
            print(f"{size} px, {ours} over torchvision, like for like: "
                  f"eager/eager {eager['speedup_like_for_like']:.2f}x, "
                  f"onnxruntime/onnxruntime {onnx['speedup_like_for_like']:.2f}x, "
                  f"fused/eager {fused['speedup_like_for_like']:.2f}x "
                  f"(mixed runtimes, ours onnxruntime/torchvision eager: {onnx['torchvision_eager_over_this']:.2f}x)")


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


def training_and_latency(args: argparse.Namespace) -> dict:
    """Training iterations per second and eval latency of the two detectors at one size (untuned, eager)."""
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
    ours, ref = results[OURS], results[REFERENCE]
    return {"image_size": args.image_size, "train_batch": args.batch_size, "eval_batch": 1, "reps": args.reps,
            "results": results,
            "ratios_ours_over_reference": {
                "train_iter_per_s": ours["train_iter_per_s"] / ref["train_iter_per_s"],
                "eval_latency": ours["eval_latency_ms"] / ref["eval_latency_ms"],
                "eval_GFLOPs": ours["eval_GFLOPs_per_image"] / ref["eval_GFLOPs_per_image"]}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=2, help="training batch")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--latency-sizes", type=int, nargs="*", default=[320, 512],
                        help="image sizes of the latency table (none: skip it)")
    parser.add_argument("--proposals", type=int, default=1000, help="RPN proposals per image, both detectors")
    parser.add_argument("--latency-reps", type=int, default=15)
    parser.add_argument("--skip-training", action="store_true", help="only the latency table")
    parser.add_argument("--out", default="runs/bench/detector.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine()}
    if not args.skip_training:
        report.update(training_and_latency(args))
    if args.latency_sizes:
        workdir = Path(args.out).parent / "detector_onnx"
        workdir.mkdir(parents=True, exist_ok=True)
        report["latency_table"] = latency_table(args.latency_sizes, args.proposals, args.latency_reps, args.warmup,
                                                workdir)
    atomic_write_json(Path(args.out), report)
    print(json.dumps(report, indent=2))
    if "latency_table" in report:
        print_latency_table(report["latency_table"])
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
