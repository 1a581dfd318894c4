"""Overfit check on any photos: 4 single-object-ish photos drawn from a COCO file by seed, trained and then
evaluated in eval mode on the same photos, once per seed.

A detector that only fits its training batches (BatchNorm leaning on the statistics of a batch of 2) passes
the loss but fails here; docs/detection.md reports each seed's AP50 for the recommended from-scratch setting.

    python bench/det_overfit.py --coco ../shared/data/coco-tiny --seeds 0 1 2 --out runs/bench/det_overfit.json
    python bench/det_overfit.py --coco ../shared/data/coco-tiny --seeds 3 model.norm BN   # any config override

"Single-object-ish": 1 or 2 annotations, none crowd, each box covering at least ``--min-area`` of the photo.
The training recipe is ``--config`` (default ``configs/det/coco_tiny_overfit.yaml``) with ``data.image_ids``
set to the drawn photos, trained on the train split and evaluated on the same photos.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.configs import config_path
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.engine.runner import run
from nasnet_zoo.utils.io import atomic_write_json


def single_object_photos(ann_file: Path, min_area: float = 0.02) -> list[int]:
    """Ids of the photos with 1-2 non-crowd boxes, each covering at least ``min_area`` of the photo (sorted)."""
    data = json.loads(ann_file.read_text(encoding="utf-8"))
    boxes = defaultdict(list)
    for ann in data["annotations"]:
        boxes[ann["image_id"]].append(ann)
    ids = []
    for image in data["images"]:
        anns = boxes[image["id"]]
        area = image["width"] * image["height"]
        if 1 <= len(anns) <= 2 and not any(a.get("iscrowd", 0) for a in anns) and \
                all(a["bbox"][2] * a["bbox"][3] >= min_area * area for a in anns):
            ids.append(int(image["id"]))
    return sorted(ids)


def draw_photos(candidates: list[int], seed: int, count: int = 4) -> list[int]:
    if len(candidates) < count:
        raise SystemExit(f"only {len(candidates)} single-object photos in the file; need {count} (lower --min-area)")
    return sorted(random.Random(seed).sample(candidates, count))


def overfit(coco: Path, config: Path, image_ids: list[int], output_dir: Path, overrides: list[str]) -> dict:
    images, ann = coco / "train2017", coco / "annotations" / "instances_train2017.json"
    cfg = load_config(DetConfig(), config, [
        "data.train_images", str(images), "data.train_ann", str(ann), "data.val_images", str(images),
        "data.val_ann", str(ann), "data.image_ids", json.dumps(image_ids), "output_dir", str(output_dir),
        "test.vis", "0", *overrides])
    started, load = time.perf_counter(), os.getloadavg()[0]
    metrics = run(cfg)
    return {"image_ids": image_ids, "AP50": metrics["AP50"], "AP": metrics["AP"], "AR100": metrics["AR100"],
            "wall_s": round(time.perf_counter() - started, 1), "load_avg_1min": [round(load, 2),
                                                                               round(os.getloadavg()[0], 2)],
            "norm": cfg.model.norm, "max_iter": cfg.solver.max_iter, "threads": cfg.threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", type=Path, required=True, help="COCO folder with train2017/ and annotations/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=config_path("det", "coco_tiny_overfit"))
    parser.add_argument("--min-area", type=float, default=0.02)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/bench/det_overfit"))
    parser.add_argument("--out", type=Path, help="JSON summary")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="trailing KEY VALUE config overrides")
    args = parser.parse_args(argv)
    candidates = single_object_photos(args.coco / "annotations" / "instances_train2017.json", args.min_area)
    results = {}
    for seed in args.seeds:
        ids = draw_photos(candidates, seed)
        print(f"seed {seed}: photos {ids}", flush=True)
        results[str(seed)] = overfit(args.coco, args.config, ids, args.output_dir / f"seed{seed}", list(args.opts))
        print(f"seed {seed}: {json.dumps(results[str(seed)])}", flush=True)
    summary = {"config": str(args.config), "overrides": list(args.opts), "candidates": candidates,
               "seeds": results, "torch": torch.__version__, "machine": platform.machine(),
               "cpus": os.cpu_count()}
    print(json.dumps({s: round(r["AP50"], 3) for s, r in results.items()}), flush=True)
    if args.out:
        atomic_write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
