"""COCO-format detection data, validated before any training starts.

The dataset indexes the annotation file itself; pycocotools (the ``detection`` extra) is imported only when
something asks for :attr:`CocoDetection.coco`, which COCOeval does. Labels are contiguous (1..K, 0 is the
background) inside the model and COCO category ids outside it; :class:`CategoryMap` converts both ways.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor
from tqdm import tqdm

from nasnet_zoo.utils.extras import require

log = logging.getLogger(__name__)

#: What PIL raises for truncated, corrupt or foreign image files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class CocoFormatError(ValueError):
    """An annotation file or image folder that does not hold valid COCO detection data."""


@dataclass(frozen=True)
class CategoryMap:
    """COCO category ids <-> contiguous labels 1..K (0 is the background)."""

    coco_ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: list[dict[str, Any]]) -> "CategoryMap":
        ordered = sorted(categories, key=lambda c: c["id"])
        return cls(tuple(int(c["id"]) for c in ordered), tuple(str(c.get("name", c["id"])) for c in ordered))

    @property
    def num_classes(self) -> int:
        """Classes including the background, as torchvision's detectors count them."""
        return len(self.coco_ids) + 1

    def to_label(self, coco_id: int) -> int:
        return self.coco_ids.index(coco_id) + 1

    def to_coco(self, label: int) -> int:
        return self.coco_ids[label - 1]

    def name(self, label: int) -> str:
        return self.names[label - 1]


def load_coco_json(ann_file: str | Path) -> dict[str, Any]:
    """Read and check a COCO instances file: it must parse and hold images, annotations and categories."""
    path = Path(ann_file)
    if not path.is_file():
        raise CocoFormatError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CocoFormatError(f"annotation file {path} is not valid JSON ({err}); expected a COCO instances file") from None
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path} holds a JSON {type(data).__name__}, not a COCO object with "
                              "'images', 'annotations' and 'categories'")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise CocoFormatError(f"{path} is not a COCO detection file: missing list(s) {missing} "
                              "(expected the layout of instances_train2017.json)")
    for i, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name"} <= set(image):
            raise CocoFormatError(f"{path}: images[{i}] needs 'id' and 'file_name', got {str(image)[:120]}")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise CocoFormatError(f"{path}: categories[{i}] needs an 'id', got {str(cat)[:120]}")
    category_ids = {c["id"] for c in data["categories"]}
    image_ids = {im["id"] for im in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not {"image_id", "bbox", "category_id"} <= set(ann):
            raise CocoFormatError(f"{path}: annotations[{i}] needs 'image_id', 'bbox' and 'category_id'")
        if ann["category_id"] not in category_ids:
            raise CocoFormatError(f"{path}: annotation id {ann.get('id', i)} (image {ann['image_id']}) has category "
                                  f"{ann['category_id']}, which is not in 'categories' {sorted(category_ids)[:20]}")
        if ann["image_id"] not in image_ids:
            raise CocoFormatError(f"{path}: annotation id {ann.get('id', i)} refers to image id {ann['image_id']}, "
                                  "which is not in 'images'")
        if not (isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4):
            raise CocoFormatError(f"{path}: annotation id {ann.get('id', i)} has bbox {ann['bbox']!r}; "
                                  "expected [x, y, width, height]")
    return data


def coco_from_dict(data: dict[str, Any]) -> Any:
    """A pycocotools COCO index over an already loaded dict (quietly: pycocotools prints progress)."""
    coco = require("pycocotools.coco", extra="detection", feature="COCO evaluation (pycocotools)").COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """COCO images and boxes as ``(image float CHW in [0, 1], target)`` for torchvision detectors.

    In training (``train=True``) crowd boxes are ignored and images left without boxes are skipped unless
    ``keep_empty``; degenerate boxes (zero width or height after clipping) are always dropped, counted in the log.
    An image that fails to decode stops with its file named, or with ``skip_bad_images`` is replaced by the next
    readable one; the target then carries ``skipped_images`` (how many were passed over) for the training log.
    """

    def __init__(self, image_dir: str | Path, ann_file: str | Path, *, train: bool, keep_empty: bool = False,
                 transforms: Callable | None = None, image_ids: Sequence[int] = (),
                 skip_bad_images: bool = False) -> None:
        self.image_dir = Path(image_dir)
        data = load_coco_json(ann_file)
        if image_ids:
            unknown = sorted(set(image_ids) - {im["id"] for im in data["images"]})
            if unknown:
                raise CocoFormatError(f"image ids {unknown[:10]} are not in {ann_file}")
            data["images"] = [im for im in data["images"] if im["id"] in set(image_ids)]
            data["annotations"] = [a for a in data["annotations"] if a["image_id"] in set(image_ids)]
        if not self.image_dir.is_dir():
            raise CocoFormatError(f"image folder {self.image_dir} does not exist")
        self._data = data
        self.imgs: dict[int, dict[str, Any]] = {im["id"]: im for im in data["images"]}
        self._anns: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            self._anns.setdefault(ann["image_id"], []).append(ann)
        self._coco: Any = None
        self.categories = CategoryMap.from_categories(data["categories"])
        self.train, self.transforms, self.skip_bad_images = train, transforms, skip_bad_images
        missing = [im for im in data["images"] if not (self.image_dir / im["file_name"]).is_file()]
        if missing:
            first = missing[0]
            raise CocoFormatError(f"image file {self.image_dir / first['file_name']} (image id {first['id']}) does "
                                  f"not exist; {len(missing)} of {len(data['images'])} images are missing from "
                                  f"{self.image_dir} (check --train-images/--val-images)")
        self._targets: dict[int, dict[str, torch.Tensor]] = {}
        dropped = 0
        for image in data["images"]:
            target, bad = self._build_target(image)
            self._targets[image["id"]] = target
            dropped += bad
        ids = sorted(self._targets)
        empty = [i for i in ids if len(self._targets[i]["boxes"]) == 0]
        if train and not keep_empty:
            ids = [i for i in ids if len(self._targets[i]["boxes"]) > 0]
        self.ids = ids
        log.info("%s: %d images (%d without boxes, %s), %d degenerate boxes dropped", Path(ann_file).name,
                 len(ids), len(empty), "kept" if keep_empty or not train else "skipped", dropped)
        self.num_degenerate = dropped
        if not ids:
            raise CocoFormatError(f"{ann_file}: no usable images (all {len(data['images'])} lack boxes); "
                                  "pass keep_empty=True to train on background-only images")

    def _build_target(self, image: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
        width, height = float(image.get("width", 0) or 0), float(image.get("height", 0) or 0)
        boxes, labels, crowd, dropped = [], [], [], 0
        for ann in self._anns.get(image["id"], []):
            if self.train and ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0, x1, y1 = x, y, x + w, y + h
            if width > 0 and height > 0:
                x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
                y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
            if x1 <= x0 or y1 <= y0:
                dropped += 1
                continue
            boxes.append([x0, y0, x1, y1])
            labels.append(self.categories.to_label(ann["category_id"]))
            crowd.append(int(ann.get("iscrowd", 0)))
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64),
                  "iscrowd": torch.tensor(crowd, dtype=torch.int64),
                  "image_id": torch.tensor(image["id"])}
        return target, dropped

    @property
    def coco(self) -> Any:
        """The pycocotools ``COCO`` index of this dataset (built at first use: COCOeval needs it, training not)."""
        if self._coco is None:
            self._coco = coco_from_dict(self._data)
        return self._coco

    def __len__(self) -> int:
        return len(self.ids)

    def image_info(self, index: int) -> dict[str, Any]:
        return self.imgs[self.ids[index]]

    def aspect_ratios(self) -> list[float]:
        """Width / height of every image, from the annotation file (no image is opened)."""
        infos = [self.imgs[i] for i in self.ids]
        return [float(im.get("width", 1) or 1) / float(im.get("height", 1) or 1) for im in infos]

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every image whose annotation records both (no image is opened)."""
        infos = [self.imgs[i] for i in self.ids]
        return [(int(im["height"]), int(im["width"])) for im in infos if im.get("height") and im.get("width")]

    def _path(self, image_id: int) -> Path:
        return self.image_dir / self.imgs[image_id]["file_name"]

    def _decode(self, image_id: int) -> torch.Tensor:
        """The image as uint8 RGB CHW; raises one of ``_DECODE_ERRORS`` when it cannot be read."""
        with Image.open(self._path(image_id)) as im:
            return pil_to_tensor(im.convert("RGB"))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        skipped = 0
        while True:
            image_id = self.ids[(index + skipped) % len(self.ids)]
            path = self._path(image_id)
            try:
                image = self._decode(image_id).float().div_(255)
                break
            except _DECODE_ERRORS as err:
                if not self.skip_bad_images or skipped + 1 >= len(self.ids):
                    raise CocoFormatError(f"cannot read image {path} (image id {image_id}): {err}. Find every such "
                                          "image before training with data.check_images true, or skip them while "
                                          "training with data.skip_bad_images true") from None
                log.warning("data.skip_bad_images: skipped unreadable image %s (image id %s): %s", path, image_id, err)
                skipped += 1
        target = {k: v.clone() for k, v in self._targets[image_id].items()}
        if skipped:
            target["skipped_images"] = torch.tensor(skipped)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def unreadable_images(self, *, rank: int = 0, world_size: int = 1, progress: bool = True) -> list[dict[str, Any]]:
        """Decode this process's share of every image in the annotation file; one record per failure.

        Threads, because PIL releases the GIL while it decodes.
        """
        ids = sorted(self.imgs)[rank::world_size]

        def failure(image_id: int) -> dict[str, Any] | None:
            try:
                self._decode(image_id)
            except _DECODE_ERRORS as err:
                return {"image_id": image_id, "file": str(self._path(image_id)), "error": str(err)}
            return None

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = list(tqdm(pool.map(failure, ids), total=len(ids), desc="check images", disable=not progress,
                                dynamic_ncols=True))
        return [r for r in results if r is not None]


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list[torch.Tensor], list[dict]]:
    images, targets = zip(*batch)
    return list(images), list(targets)
