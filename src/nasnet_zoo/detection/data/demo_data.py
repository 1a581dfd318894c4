"""The embedded demo dataset: scikit-learn's real handwritten digits composited onto canvases, written as
COCO (PNG images + instances JSON) so the demo goes through exactly the path real data takes.

Train and val canvases draw their digits from disjoint halves of the 1,797 scanned digits, so val measures
detection of handwriting the model has not seen.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from nasnet_zoo.hub import cache_dir
from nasnet_zoo.utils.extras import require

DIGIT_NAMES = tuple(str(d) for d in range(10))
#: COCO category id of digit d; deliberately not 0..9 so the label <-> category mapping is exercised.
CATEGORY_IDS = tuple(10 + d for d in range(10))
FORMAT_VERSION = 1


@dataclass
class DigitsCanvases:
    """How many canvases the demo dataset draws, and how: the config's ``DEMO.*`` keys (``DemoConfig``) and the
    first fields of ``DigitsSpec``."""

    num_train: int = 600
    num_val: int = 100
    canvas: int = 128
    min_digit: int = 28
    max_digit: int = 44
    max_per_image: int = 3


@dataclass
class DigitsSpec(DigitsCanvases):
    """What the demo dataset holds; the cache folder name is a hash of it."""

    val_fraction: float = 0.3
    seed: int = 0


def digits_spec(canvases: DigitsCanvases, seed: int) -> DigitsSpec:
    """The dataset of ``canvases`` (a ``DemoConfig``, say) drawn with ``seed``."""
    return DigitsSpec(**{f.name: getattr(canvases, f.name) for f in fields(DigitsCanvases)}, seed=seed)


def uses_demo_data(*data_paths: str | None) -> bool:
    """No dataset given (every image folder and annotation file empty): both engines then run the demo data."""
    return not any(data_paths)


def load_digit_images(seed: int, val_fraction: float) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits (8x8, values 0..16) as floats in [0, 1], split into disjoint train/val writers."""
    datasets = require("sklearn.datasets", extra="demo", feature="The embedded demo data (scikit-learn's digits)")
    digits = datasets.load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - val_fraction))
    return (images[order[:cut]], labels[order[:cut]]), (images[order[cut:]], labels[order[cut:]])


def render_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 digit upscaled smoothly to ``size`` x ``size`` (values in [0, 1])."""
    return np.asarray(Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                      dtype=np.float32) / 255.0


def _place(rng: np.random.Generator, sizes: list[int], canvas: int) -> list[tuple[int, int, int]]:
    """Non-overlapping (x, y, size) positions; digits that do not fit after some tries are left out."""
    placed: list[tuple[int, int, int]] = []
    for size in sizes:
        for _ in range(30):
            x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
            if all(x + size <= px or px + ps <= x or y + size <= py or py + ps <= y for px, py, ps in placed):
                placed.append((x, y, size))
                break
    return placed


def compose_split(images: np.ndarray, labels: np.ndarray, count: int, spec: DigitsSpec, rng: np.random.Generator,
                  folder: Path, first_ann_id: int = 1) -> dict:
    """Draw ``count`` canvases into ``folder`` and return their COCO dict."""
    coco: dict = {"info": {"description": "nasnet-zoo demo: scikit-learn digits on canvases",
                           "version": FORMAT_VERSION, "spec": asdict(spec)},
                  "images": [], "annotations": [],
                  "categories": [{"id": c, "name": n, "supercategory": "digit"}
                                 for c, n in zip(CATEGORY_IDS, DIGIT_NAMES)]}
    ann_id = first_ann_id
    for image_id in range(1, count + 1):
        tint = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
        canvas = rng.uniform(0.0, 0.25, size=(spec.canvas, spec.canvas, 1)).astype(np.float32) * np.ones(3, np.float32)
        n = int(rng.integers(1, spec.max_per_image + 1))
        sizes = [int(s) for s in rng.integers(spec.min_digit, spec.max_digit + 1, size=n)]
        for x, y, size in _place(rng, sizes, spec.canvas):
            k = int(rng.integers(len(images)))
            ink = render_digit(images[k], size)[..., None] * tint
            patch = canvas[y:y + size, x:x + size]
            canvas[y:y + size, x:x + size] = np.maximum(patch, ink)
            rows, cols = np.nonzero(ink.max(-1) > 0.2)
            x0, y0, x1, y1 = x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1
            coco["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[labels[k]],
                                        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                        "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0})
            ann_id += 1
        name = f"{image_id:06d}.png"
        Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8)).save(folder / name)
        coco["images"].append({"id": image_id, "file_name": name, "width": spec.canvas, "height": spec.canvas})
    return coco


@dataclass(frozen=True)
class DemoPaths:
    root: Path
    train_images: Path
    train_ann: Path
    val_images: Path
    val_ann: Path


def demo_paths(root: Path) -> DemoPaths:
    return DemoPaths(root, root / "train", root / "annotations" / "instances_train.json",
                     root / "val", root / "annotations" / "instances_val.json")


def build_digits_dataset(spec: DigitsSpec = DigitsSpec(), root: Path | None = None) -> DemoPaths:
    """Write the dataset once under the cache (atomically: a killed build leaves nothing half-written)."""
    key = hashlib.sha1(json.dumps({**asdict(spec), "v": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()[:10]
    final = (root or cache_dir() / "demo") / f"digits-{key}"
    paths = demo_paths(final)
    if paths.val_ann.is_file():
        return paths
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        staged = demo_paths(tmp)
        for folder in (staged.train_images, staged.val_images, staged.train_ann.parent):
            folder.mkdir(parents=True)
        (train_x, train_y), (val_x, val_y) = load_digit_images(spec.seed, spec.val_fraction)
        rng = np.random.default_rng(spec.seed)
        train = compose_split(train_x, train_y, spec.num_train, spec, rng, staged.train_images)
        val = compose_split(val_x, val_y, spec.num_val, spec, rng, staged.val_images)
        staged.train_ann.write_text(json.dumps(train), encoding="utf-8")
        staged.val_ann.write_text(json.dumps(val), encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first
            if not paths.val_ann.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return paths
