"""Export a NASNet classifier or a whole Faster R-CNN detector to ONNX and check it against PyTorch.

  nasnet-zoo export-onnx --model nasnet_a_mobile --pretrained nasnet_a_mobile.tf_in1k --output mobile.onnx \\
      --verify IMG1.jpg IMG2.jpg
  nasnet-zoo export-onnx --detector fasterrcnn_nasnet_a_mobile_fpn --checkpoint runs/det/model_final.pth \\
      --output det.onnx --verify val2017/*.jpg --benchmark 10

(``python tools/export_onnx.py`` in a checkout is the same program.)

``--verify`` runs onnxruntime and PyTorch on the given images plus built-in cases (other sizes, a blank image):
classifier logits within 1e-4, detections with the same count and labels, boxes within 1e-2 px, scores within
1e-4. A mismatch prints a table of what differed and exits with status 1; bad input exits with status 2.
Detectors are rebuilt from the run's ``config.yaml`` beside the checkpoint (or ``--config-file``), with
trailing ``KEY VALUE`` overrides.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from nasnet_zoo.cli.common import add_overrides, config_overrides, default_argument_parser, usage_error
from nasnet_zoo.config import ConfigError
from nasnet_zoo.factory import create_model
from nasnet_zoo.onnx import (ClassifierGraph, OnnxClassifier, OnnxModelError, ParityReport, builtin_classifier_cases,
                             default_class_names, export_classifier, load_image, run_classifier_parity)
from nasnet_zoo.utils.extras import exits_on_missing_extra, require
from nasnet_zoo.utils.io import atomic_write_json


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = default_argument_parser("export-onnx", __doc__, run_folder=False, config_help="the detector's run config "
                                "(default: config.yaml beside the checkpoint)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="zoo classifier name (nasnet_a_mobile, nasnet_a_large, nasnet_a_cifar)")
    what.add_argument("--detector", help="detector name (fasterrcnn_nasnet_a_mobile_fpn, ...); needs --checkpoint")
    p.add_argument("--pretrained", help="classifier weights: a zoo tag or a local file")
    p.add_argument("--checkpoint", help="detector checkpoint from tools/train_det.py (model_final.pth)")
    p.add_argument("--annotations", help="COCO annotation file naming the detector's categories "
                   "(default: the run's own, from its config)")
    p.add_argument("--score-thresh", type=float, help="detector box score threshold baked into the export")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--verify", nargs="*", metavar="IMG", help="check parity on these images and built-in cases")
    p.add_argument("--benchmark", type=int, default=0, metavar="RUNS",
                   help="time onnxruntime and PyTorch eager over RUNS passes of the verify images")
    p.add_argument("--providers", nargs="+", help="onnxruntime providers (default: CUDA when usable, else CPU)")
    p.add_argument("--threads", type=int, help="intra-op threads for both PyTorch and onnxruntime (default: their own)")
    p.add_argument("--report", help="write the parity and speed figures here as JSON")
    p.add_argument("--verbose", action="store_true",
                   help="also show the tracer's and exporter's known harmless warnings (docs/onnx.md)")
    add_overrides(p, "test.proposals 100 (the detector's run config)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, as a :class:`ConfigError`; the trailing pairs checked as everywhere."""
    args.opts = config_overrides(args, {})
    if args.detector and not args.checkpoint:
        raise ConfigError("--detector needs --checkpoint (a tools/train_det.py checkpoint)")
    if args.model and (args.checkpoint or args.opts or args.annotations or args.score_thresh is not None):
        raise ConfigError("--checkpoint, --annotations, --score-thresh and KEY VALUE overrides apply to --detector "
                          "only")
    if args.benchmark < 0:
        raise ConfigError("--benchmark takes a positive number of runs")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be at least 1")


def mean_ms(fn: Callable[[Any], Any], inputs: Sequence[Any], runs: int) -> float:
    """Mean milliseconds per input over ``runs`` passes, after one warm-up pass."""
    for x in inputs:
        fn(x)
    start = time.perf_counter()
    for _ in range(runs):
        for x in inputs:
            fn(x)
    return (time.perf_counter() - start) * 1000.0 / (runs * len(inputs))


def export_and_check_classifier(args: argparse.Namespace, images: list[np.ndarray]) -> dict[str, Any]:
    model = create_model(args.model, pretrained=args.pretrained or False).eval()
    cfg = model.pretrained_cfg
    input_size = tuple(cfg["input_size"][1:])
    export_classifier(model, args.output, model_name=args.model, input_size=input_size, mean=cfg["mean"],
                      std=cfg["std"], class_names=default_class_names(cfg, model.config.num_classes),
                      show_known_warnings=args.verbose)
    runner = OnnxClassifier(args.output, args.providers, threads=args.threads)
    print(f"wrote {args.output} (providers: {', '.join(runner.providers)})")
    graph = ClassifierGraph(model, input_size, cfg["mean"], cfg["std"]).eval()

    def reference(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.from_numpy(batch)).numpy()

    given = [(f"image {i}", img[None]) for i, img in enumerate(images)]
    return _check(args, reference, runner.logits, run_classifier_parity, given,
                  builtin_classifier_cases(input_size), runner.providers)


def export_and_check_detector(args: argparse.Namespace, images: list[np.ndarray]) -> dict[str, Any]:
    from nasnet_zoo.detection.modeling.trained import category_names, load_detector
    from nasnet_zoo.onnx import OnnxDetector, builtin_detector_cases, run_detector_parity
    from nasnet_zoo.onnx.detector import export_detector, torch_detections
    model, category_ids, run_annotations = load_detector(args.detector, args.checkpoint, args.config_file, args.opts)
    if args.score_thresh is not None:
        model.roi_heads.score_thresh = args.score_thresh
    names = ["__background__"] + category_names(category_ids[1:], args.annotations or run_annotations)
    export_detector(model, args.output, model_name=args.detector, class_names=names, category_ids=category_ids,
                    show_known_warnings=args.verbose)
    runner = OnnxDetector(args.output, args.providers, threads=args.threads)
    print(f"wrote {args.output} (providers: {', '.join(runner.providers)})")

    def reference(image: np.ndarray) -> dict[str, np.ndarray]:
        return torch_detections(model, image)

    given = [(f"image {i}", img) for i, img in enumerate(images)]
    return _check(args, reference, runner.raw, run_detector_parity, given, builtin_detector_cases(), runner.providers)


def _check(args: argparse.Namespace, reference: Callable, onnx_run: Callable,
           run_parity: Callable[..., ParityReport], given: list[tuple[str, np.ndarray]],
           builtin: list[tuple[str, np.ndarray]], providers: list[str]) -> dict[str, Any]:
    """Parity on the given and built-in cases (``--verify``), then speed on the given ones (``--benchmark``)."""
    result: dict[str, Any] = {"output": str(args.output), "providers": providers}
    bench_inputs = [x for _, x in given] or [x for _, x in builtin[:2]]
    if args.verify is not None:
        report = run_parity(reference, onnx_run, given + builtin)
        print(report.table())
        result["parity"] = report.to_dict()
    if args.benchmark:
        torch_ms = mean_ms(reference, bench_inputs, args.benchmark)
        onnx_ms = mean_ms(onnx_run, bench_inputs, args.benchmark)
        result["speed"] = {"pytorch_eager_ms": torch_ms, "onnxruntime_ms": onnx_ms, "speedup": torch_ms / onnx_ms,
                           "runs": args.benchmark, "inputs": len(bench_inputs), "torch_threads": torch.get_num_threads()}
        print(f"speed per input: PyTorch eager {torch_ms:.1f} ms, onnxruntime {onnx_ms:.1f} ms "
              f"({torch_ms / onnx_ms:.2f}x) over {args.benchmark} x {len(bench_inputs)} inputs")
    return result


@exits_on_missing_extra
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
    except ConfigError as err:
        return usage_error(str(err))
    require("onnxruntime", extra="onnx", feature="export-onnx (it checks the file in onnxruntime)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        images = [load_image(path) for path in args.verify or []]
        run = export_and_check_detector if args.detector else export_and_check_classifier
        result = run(args, images)
    except (ValueError, TypeError, FileNotFoundError, ConfigError, OnnxModelError) as err:
        return usage_error(str(err))
    if args.report:
        atomic_write_json(args.report, result)
    return 0 if result.get("parity", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
