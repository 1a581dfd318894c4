#!/usr/bin/env python
"""Draw a trained detector's predictions beside the ground truth for N images of a COCO-format set.

    python tools/visualize_det.py --weights runs/det/model_final.pth --images coco/val2017 \\
        --ann coco/annotations/instances_val2017.json --num 8 --output-dir runs/det/vis
    python tools/visualize_det.py --weights runs/demo/model_final.pth --num 8   # the demo's val split

The model is rebuilt from the ``config.yaml`` saved beside the weights (or ``--config-file``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="model_final.pth or checkpoint.pt of train_det.py")
    parser.add_argument("--config-file", help="the run's config (default: config.yaml beside --weights)")
    parser.add_argument("--images", help="image folder (default: the run's val images)")
    parser.add_argument("--ann", help="COCO annotation file (default: the run's val annotations)")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--score-thresh", type=float, default=0.5)
    parser.add_argument("--output-dir", help="default: vis/ beside --weights")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    import torch

    from nasnet_zoo.config import load_config
    from nasnet_zoo.detection.config import DetConfig
    from nasnet_zoo.detection.data.coco import CocoDetection, CocoFormatError
    from nasnet_zoo.detection.evaluation.visualize import save_visualizations
    from nasnet_zoo.detection.modeling.builders import detector_identity
    from nasnet_zoo.detection.modeling.trained import build_model
    from nasnet_zoo.utils.checkpoint import CheckpointError, load_checkpoint

    weights = Path(args.weights)
    config_file = Path(args.config_file) if args.config_file else weights.parent / "config.yaml"
    if not config_file.is_file():
        sys.exit(f"error: no config for {weights}: {config_file} does not exist (pass --config-file)")
    cfg = load_config(DetConfig(), config_file)
    cfg.model.backbone_weights = ""  # every weight comes from --weights
    images, ann = args.images or cfg.data.val_images, args.ann or cfg.data.val_ann
    if not (images and ann):
        sys.exit("error: give --images and --ann (the run's config names no val set)")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    try:
        dataset = CocoDetection(images, ann, train=False)
        cats = dataset.categories
        model = build_model(cfg, cats.num_classes).to(device)
        load_checkpoint(weights, model, detector_identity(cfg.model.name, cats.num_classes, list(cats.coco_ids)),
                        written_by="tools/train_det.py")
    except (CocoFormatError, CheckpointError, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    out = Path(args.output_dir) if args.output_dir else weights.parent / "vis"
    paths = save_visualizations(model, dataset, device, out, args.num, args.score_thresh)
    print(f"drew {len(paths)} images (left: predictions >= {args.score_thresh}, right: ground truth) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
