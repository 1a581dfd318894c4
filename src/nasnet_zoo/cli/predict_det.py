"""``nasnet-zoo predict-det`` / ``tools/predict_det.py``: a trained detector on photos, files, folders or globs.

    nasnet-zoo predict-det --weights runs/det/model_final.pth photos/ more/*.jpg --output-dir runs/pred
    nasnet-zoo predict-det --weights det.onnx photos/ --device cuda --score-thresh 0.3
    nasnet-zoo predict-det --weights runs/det/model_final.pth photos/ test.proposals 100

Trailing ``KEY VALUE`` config overrides come after the inputs, as in every program: the first word that is a key
of the detector's config (``test.proposals``, ``model.norm``, ...) starts them. ``--opts KEY VALUE ...`` still
works (deprecated).
"""
from __future__ import annotations

import sys
from typing import Sequence

from nasnet_zoo.cli.common import default_argument_parser, usage_error
from nasnet_zoo.config import config_keys
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.engine.predict import PredictError, format_summary, load_predictor, predict_images
from nasnet_zoo.utils.extras import exits_on_missing_extra


def split_overrides(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """Inputs, then the ``KEY VALUE`` pairs from the first word that is a key of the detector's config on."""
    keys = {k.lower() for k in config_keys(DetConfig())}
    start = next((i for i, w in enumerate(words) if w.lower() in keys), len(words))
    return list(words[:start]), list(words[start:])


@exits_on_missing_extra
def main(argv: Sequence[str] | None = None) -> int:
    p = default_argument_parser("predict-det", __doc__, output_help="where detections.json, summary.json and "
                                "vis/ go (default runs/predict)", resume_help="(no effect: prediction has no state)")
    p.add_argument("--weights", required=True, help="a tools/train_det.py checkpoint (.pth) or an exported .onnx")
    p.add_argument("inputs", nargs="*", metavar="INPUT [KEY VALUE ...]",
                   help="image files, folders (searched recursively) or glob patterns, then config overrides")
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (ONNX: CUDA provider)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (PyTorch checkpoints)")
    p.add_argument("--no-fuse", action="store_true", help="run the eager backbone instead of the fused one")
    p.add_argument("--no-pictures", action="store_true")
    p.add_argument("--strict", action="store_true", help="fail on an unreadable image instead of skipping it")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="deprecated: give the KEY VALUE "
                   "pairs after the inputs instead")
    args = p.parse_args(argv)
    inputs, overrides = split_overrides(args.inputs)
    if args.opts:
        print("note: --opts is deprecated; put the KEY VALUE pairs after the inputs", file=sys.stderr)
    try:
        predictor = load_predictor(args.weights, config_file=args.config_file, overrides=[*overrides, *args.opts],
                                   device=args.device, fuse=False if args.no_fuse else None)
        summary = predict_images(predictor, inputs, args.output_dir or "runs/predict",
                                 score_thresh=args.score_thresh, batch_size=args.batch_size, strict=args.strict,
                                 draw_pictures=not args.no_pictures)
    except (PredictError, FileNotFoundError, ValueError) as err:
        return usage_error(str(err))
    print(format_summary(summary))
    return 0
