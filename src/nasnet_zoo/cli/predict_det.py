"""``nasnet-zoo predict-det`` / ``tools/predict_det.py``: a trained detector on photos, files, folders or globs.

    nasnet-zoo predict-det --weights runs/det/model_final.pth photos/ more/*.jpg --output-dir runs/pred
    nasnet-zoo predict-det --weights det.onnx photos/ --device cuda --score-thresh 0.3
    nasnet-zoo predict-det --weights runs/det/model_final.pth photos/ --opts TEST.PROPOSALS 100
"""
from __future__ import annotations

import argparse
from typing import Sequence

from nasnet_zoo.detection.engine.predict import PredictError, format_summary, load_predictor, predict_images
from nasnet_zoo.utils.extras import exits_on_missing_extra


@exits_on_missing_extra
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nasnet-zoo predict-det", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a tools/train_det.py checkpoint (.pth) or an exported .onnx")
    p.add_argument("inputs", nargs="*", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--output-dir", default="runs/predict", help="where detections.json, summary.json and vis/ go")
    p.add_argument("--config-file", help="the training run's config.yaml (default: beside the checkpoint)")
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (ONNX: CUDA provider)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (PyTorch checkpoints)")
    p.add_argument("--no-fuse", action="store_true", help="run the eager backbone instead of the fused one")
    p.add_argument("--no-pictures", action="store_true")
    p.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="last: config overrides for a .pth checkpoint, e.g. --opts TEST.PROPOSALS 100")
    args = p.parse_args(argv)
    try:
        predictor = load_predictor(args.weights, config_file=args.config_file, overrides=args.opts,
                                   device=args.device, fuse=False if args.no_fuse else None)
        summary = predict_images(predictor, args.inputs, args.output_dir, score_thresh=args.score_thresh,
                                 batch_size=args.batch_size, strict=args.strict, draw_pictures=not args.no_pictures)
    except (PredictError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", flush=True)
        return 2
    print(format_summary(summary))
    return 0
