"""onnxruntime against PyTorch eager: the NASNet-A Mobile classifier and the mobile FPN detector (issue 6).

Everything runs in one process, interleaved (one call of each contender per repetition, in rotating order),
after a warm-up; we report median wall times. Torch and onnxruntime get the same thread count (``--threads``,
default 1: on a shared machine spinning thread pools make 2-thread timings meaningless).

Classifier contenders at 224 px, batch 1 and 8 (same random weights in ours and Cadene's, converted):
  ours_onnx      our nasnet_a_mobile through nasnet_zoo.onnx.export_classifier (uint8 in, preprocessing inside)
  cadene_onnx    Cadene's pretrainedmodels nasnetamobile through the same export_classifier
  cadene_eager   Cadene's model in PyTorch eager (NCHW), and cadene_eager_cl with channels_last
  ours_eager     our model in PyTorch eager, and ours_eager_optimized (nasnet_zoo.inference.optimize_for_inference)
Detector contenders, batch 1 (a 480x640 photo, resized inside to 800x1067):
  det_onnx / det_eager   fasterrcnn_nasnet_a_mobile_fpn (random weights) exported by nasnet_zoo.onnx.export_detector

Targets: ours_onnx <= cadene_onnx and >= 3x faster than cadene_eager at batch 1; det_onnx >= 1.5x faster
than det_eager. Outputs are compared too.

    python bench/onnx_speed.py --out runs/bench/onnx.json [--reps 10] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

import nasnet_zoo
from nasnet_zoo.convert import convert_state_dict
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.onnx import ClassifierGraph, export_classifier, open_session
from nasnet_zoo.onnx.parity import synthetic_image
from nasnet_zoo.testing import randomize_batchnorm
from nasnet_zoo.utils.io import atomic_write_json

MEAN = STD = (0.5, 0.5, 0.5)


def photos(size: tuple[int, int] | None, count: int) -> list[np.ndarray]:
    """coco-tiny val photos (NASNET_ZOO_TEST_DATA or ../shared/data), resized to ``size``; synthetic if absent."""
    root = Path(os.environ.get("NASNET_ZOO_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    files = sorted((root / "coco-tiny" / "val2017").glob("*.jpg"))
    out = []
    for i in range(count):
        if files:
            img = Image.open(files[i % len(files)]).convert("RGB")
            out.append(np.asarray(img.resize(size[::-1], Image.BILINEAR) if size else img))
        else:
            out.append(synthetic_image(*(size or (480, 640)), seed=i))
    return out




def session_runner(path: Path, task: str, threads: int) -> Callable[[np.ndarray], list[np.ndarray]]:
    session, _ = open_session(path, task=task, threads=threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def interleaved(runs: dict[str, Callable], inputs: dict[str, object], reps: int, warmup: int) -> dict[str, float]:
    """Median wall seconds per call of each contender, calls interleaved in rotating order."""
    names = list(runs)
    wall: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(warmup + reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            start = time.perf_counter()
            runs[name](inputs[name])
            if rep >= warmup:
                wall[name].append(time.perf_counter() - start)
    return {n: statistics.median(v) for n, v in wall.items()}


@torch.no_grad()
def bench_classifier(workdir: Path, batches: list[int], reps: int, warmup: int, threads: int) -> dict:
    from pretrainedmodels.models import nasnet_mobile
    cadene = randomize_batchnorm(nasnet_mobile.NASNetAMobile(num_classes=1000), seed=1)
    ours = nasnet_zoo.create_model("nasnet_a_mobile").eval()
    ours.load_state_dict(convert_state_dict(cadene.state_dict(), source="cadene"), strict=False)
    exports = {}
    for name, model in (("ours", ours), ("cadene", cadene)):
        start = time.perf_counter()
        export_classifier(model, workdir / f"{name}.onnx", model_name=name, input_size=(224, 224), mean=MEAN, std=STD)
        exports[name] = time.perf_counter() - start
    runs: dict[str, Callable] = {
        "ours_onnx": session_runner(workdir / "ours.onnx", "classification", threads),
        "cadene_onnx": session_runner(workdir / "cadene.onnx", "classification", threads),
        "cadene_eager": cadene,
        "ours_eager": ours,
        "ours_eager_optimized": optimize_for_inference(ours),
    }
    cadene_cl = copy.deepcopy(cadene).to(memory_format=torch.channels_last)
    runs["cadene_eager_cl"] = lambda x: cadene_cl(x.contiguous(memory_format=torch.channels_last))
    results = []
    for batch in batches:
        images = np.stack(photos((224, 224), batch))
        tensor = ClassifierGraph(nn.Identity(), (224, 224), MEAN, STD).preprocess(torch.from_numpy(images))
        inputs = {n: images if n.endswith("_onnx") else tensor for n in runs}
        reference = cadene(tensor).numpy()
        max_diff = {n: float(np.abs((runs[n](inputs[n])[0] if n.endswith("_onnx") else runs[n](tensor).numpy())
                                    - reference).max()) for n in runs}
        wall = interleaved(runs, inputs, reps, warmup)
        results.append({
            "batch": batch, "median_wall_ms": {n: 1000 * t for n, t in wall.items()},
            "max_abs_logit_diff_vs_cadene_eager": max_diff,
            "ratios": {
                "cadene_onnx / ours_onnx (target >= 1)": wall["cadene_onnx"] / wall["ours_onnx"],
                "cadene_eager / ours_onnx (target >= 3 at batch 1)": wall["cadene_eager"] / wall["ours_onnx"],
                "cadene_eager_cl / ours_onnx": wall["cadene_eager_cl"] / wall["ours_onnx"],
                "ours_eager / ours_onnx": wall["ours_eager"] / wall["ours_onnx"],
                "ours_eager_optimized / ours_onnx": wall["ours_eager_optimized"] / wall["ours_onnx"],
            },
        })
    return {"export_seconds": exports, "per_batch": results}


@torch.no_grad()
def bench_detector(workdir: Path, reps: int, warmup: int, threads: int) -> dict:
    from nasnet_zoo.detection.modeling.builders import build_detector
    from nasnet_zoo.onnx import export_detector, run_detector_parity, torch_detections
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=91).eval()
    randomize_batchnorm(model.backbone.body, seed=3)
    names = [f"class_{i}" for i in range(91)]
    start = time.perf_counter()
    export_detector(model, workdir / "det.onnx", model_name="fasterrcnn_nasnet_a_mobile_fpn", class_names=names)
    export_s = time.perf_counter() - start
    onnx_run = session_runner(workdir / "det.onnx", "detection", threads)
    image = photos(None, 1)[0]
    parity = run_detector_parity(lambda im: torch_detections(model, im),
                                 lambda im: dict(zip(("boxes", "labels", "scores"), onnx_run(im))), [("photo", image)])
    wall = interleaved({"det_onnx": onnx_run, "det_eager": lambda im: torch_detections(model, im)},
                       {"det_onnx": image, "det_eager": image}, reps, warmup)
    return {"image": f"{image.shape[0]}x{image.shape[1]}", "export_seconds": export_s,
            "median_wall_ms": {n: 1000 * t for n, t in wall.items()}, "parity": parity.to_dict(),
            "ratios": {"det_eager / det_onnx (target >= 1.5)": wall["det_eager"] / wall["det_onnx"]}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench/onnx.json", help="JSON results file")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--skip-detector", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"threads": args.threads, "reps": args.reps, "torch": torch.__version__,
                  "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                  "classifier": bench_classifier(Path(tmp), args.batch_sizes, args.reps, args.warmup, args.threads)}
        if not args.skip_detector:
            result["detector"] = bench_detector(Path(tmp), args.reps, args.warmup, args.threads)
    import onnxruntime
    result["onnxruntime"] = onnxruntime.__version__
    for entry in result["classifier"]["per_batch"]:
        print(f"classifier batch {entry['batch']}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in entry["median_wall_ms"].items()))
        for k, v in entry["ratios"].items():
            print(f"  {k}: {v:.2f}")
    if "detector" in result:
        det = result["detector"]
        print(f"detector {det['image']}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in det["median_wall_ms"].items()))
        for k, v in det["ratios"].items():
            print(f"  {k}: {v:.2f}")
        print(f"  parity: {'ok' if det['parity']['ok'] else 'MISMATCH'}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
