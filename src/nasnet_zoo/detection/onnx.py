"""Whole Faster R-CNN detectors in ONNX: export with preprocessing and postprocessing inside, run, verify.

The exported graph takes one uint8 RGB image [H, W, 3] of any size and returns ``boxes`` [N, 4] (x1, y1, x2, y2
in the input image's pixels), ``labels`` [N] (the model's contiguous labels, mapped to dataset category ids by
:class:`OnnxDetector`) and ``scores`` [N]. Inside: scaling to [0, 1], mean/std normalisation, the resize to
``min_size``/``max_size``, padding to ``size_divisible``, backbone, RPN, RoI heads and box rescaling.

Two details make the graph agree with eager PyTorch at every size:

* torchvision's traced resize computes its scale in float32 through a reciprocal, so sides that scale to a
  whole number (200 -> 160) come out one pixel short in onnxruntime. :class:`DetectorGraph` computes the
  resized size in float64 exactly as eager PyTorch does (``floor(side * min(min_size / short, max_size / long))``).
* NASNet's TF "SAME" paddings depend on the parity of each map's size and are fixed when the graph is traced.
  With the padded image a multiple of 32 every stride-2 op sees the same parity at every image size, so
  ``size_divisible`` must be a multiple of 32.
"""
from __future__ import annotations

import copy
import io
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales

from nasnet_zoo.onnx.export import save_onnx
from nasnet_zoo.onnx.runtime import ImageInput, load_image, open_session
from nasnet_zoo.onnx.verify import ParityCase, ParityReport, blank_image, synthetic_image

#: RoIAlign(aligned=True) exports correctly only from opset 16; torchvision's detection symbolics target 17.
DETECTOR_OPSET = 17
BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4


class GatherMultiScaleRoIAlign(nn.Module):
    """torchvision's ``MultiScaleRoIAlign`` with a merge of the levels that exports to one Gather.

    Traced, torchvision writes each level's crops into the full [rois, C, h, w] output with one ScatterElements
    per level, about 9% of the mobile FPN detector's onnxruntime time. Here the crops are concatenated and put
    back into box order by a single gather; the values are the same.
    """

    def __init__(self, pool: MultiScaleRoIAlign) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        pool = self.pool
        maps = [features[name] for name in pool.featmap_names]
        if pool.scales is None or pool.map_levels is None:
            pool.scales, pool.map_levels = _setup_scales(maps, image_shapes, pool.canonical_scale, pool.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(maps) == 1:
            return roi_align(maps[0], rois, pool.output_size, pool.scales[0], pool.sampling_ratio)
        levels = pool.map_levels(boxes)
        crops, order = [], []
        for level, (feature, scale) in enumerate(zip(maps, pool.scales)):
            index = torch.where(levels == level)[0]
            crops.append(roi_align(feature, rois[index], pool.output_size, scale, pool.sampling_ratio))
            order.append(index)
        return torch.cat(crops)[torch.argsort(torch.cat(order))]


class DetectorGraph(nn.Module):
    """uint8 image [H, W, 3] -> (boxes, labels, scores): GeneralizedRCNN inference, traceable and exact.

    Works on a copy of the detector (its RoI pooling is swapped for :class:`GatherMultiScaleRoIAlign`).
    """

    def __init__(self, detector: GeneralizedRCNN) -> None:
        super().__init__()
        detector = copy.deepcopy(detector)
        if type(detector.roi_heads.box_roi_pool) is MultiScaleRoIAlign:
            detector.roi_heads.box_roi_pool = GatherMultiScaleRoIAlign(detector.roi_heads.box_roi_pool)
        transform = detector.transform
        if transform.fixed_size is not None:
            raise ValueError("detectors with a fixed_size transform are not supported; use min_size/max_size")
        if transform.size_divisible % 32:
            raise ValueError(f"size_divisible={transform.size_divisible}: NASNet's SAME paddings stay valid for "
                             "every image size only when padded sizes are multiples of 32")
        self.detector = detector
        self.register_buffer("size_limits", torch.tensor([float(transform.min_size[-1]), float(transform.max_size)],
                                                         dtype=torch.float64), persistent=False)

    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """Resize like eager torchvision (double-precision scale), with sizes the trace keeps dynamic."""
        sides = torch._shape_as_tensor(image)[-2:].to(torch.float64)
        short_long, _ = sides.sort()
        scale = (self.size_limits / short_long).amin(0, keepdim=True)
        size = torch.floor(sides * scale).to(torch.int64)
        return F.interpolate(image[None], size=(size[0], size[1]), mode="bilinear", align_corners=False)[0]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        transform = self.detector.transform
        x = image.permute(2, 0, 1).to(torch.float32) / 255.0
        original = (x.shape[-2], x.shape[-1])
        x = self.resize(transform.normalize(x))
        images = ImageList(transform.batch_images([x], size_divisible=transform.size_divisible),
                           [(x.shape[-2], x.shape[-1])])
        features = self.detector.backbone(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, _ = self.detector.rpn(images, features)
        detections, _ = self.detector.roi_heads(features, proposals, images.image_sizes)
        result = transform.postprocess(detections, images.image_sizes, [original])[0]
        return result["boxes"], result["labels"], result["scores"]


def export_detector(detector: GeneralizedRCNN, path: str | os.PathLike, *, model_name: str,
                    class_names: Sequence[str], category_ids: Sequence[int] | None = None,
                    opset: int = DETECTOR_OPSET, example_size: tuple[int, int] = (427, 640)) -> Path:
    """Export an eval-mode torchvision-style detector with dynamic image height and width.

    ``class_names[i]`` and ``category_ids[i]`` describe model label ``i`` (index 0 is the background).
    """
    if opset < 16:
        raise ValueError(f"opset {opset} is too old: RoIAlign(aligned=True) exports correctly only from opset 16")
    num_classes = detector.roi_heads.box_predictor.cls_score.out_features
    category_ids = list(range(num_classes)) if category_ids is None else list(category_ids)
    if len(class_names) != num_classes or len(category_ids) != num_classes:
        raise ValueError(f"the detector has {num_classes} labels (background included) but {len(class_names)} class "
                         f"names and {len(category_ids)} category ids were given")
    graph = DetectorGraph(detector).eval()
    example = torch.from_numpy(synthetic_image(*example_size, seed=0))
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(graph, (example,), buffer, dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=["boxes", "labels", "scores"],
                          dynamic_axes={"image": {0: "height", 1: "width"}, "boxes": {0: "detections"},
                                        "labels": {0: "detections"}, "scores": {0: "detections"}})
    transform, heads = detector.transform, detector.roi_heads
    metadata = {
        "task": "detection", "model_name": model_name, "class_names": list(class_names),
        "category_ids": [int(c) for c in category_ids],
        "input_spec": {"name": "image", "dtype": "uint8", "shape": ["height", "width", 3], "channels": "RGB",
                       "range": [0, 255]},
        "output_spec": {"boxes": "float32 [N, 4] x1 y1 x2 y2, input image pixels",
                        "labels": "int64 [N] model labels (index into class_names / category_ids)",
                        "scores": "float32 [N], descending per class"},
        "preprocessing": {"scale": "1/255", "mean": list(transform.image_mean), "std": list(transform.image_std),
                          "min_size": int(transform.min_size[-1]), "max_size": int(transform.max_size),
                          "size_divisible": int(transform.size_divisible)},
        "postprocessing": {"score_thresh": float(heads.score_thresh), "nms_thresh": float(heads.nms_thresh),
                           "detections_per_img": int(heads.detections_per_img)},
        "opset": opset,
    }
    return save_onnx(onnx.load_from_string(buffer.getvalue()), path, metadata)


class OnnxDetector:
    """Run an exported detector on a path, PIL image or uint8 array of any size.

    ``providers=None`` picks CUDA when onnxruntime-gpu sees a GPU, else CPU; ``.providers`` reports what the
    session really runs; ``threads`` caps onnxruntime's intra-op threads. Calls return ``boxes`` (original
    image pixels), ``labels`` (dataset category ids), ``names`` and ``scores``.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        self.session, self.metadata = open_session(path, providers, task="detection", threads=threads)
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.category_ids = np.asarray(self.metadata["category_ids"], dtype=np.int64)
        self.model_name: str = self.metadata["model_name"]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's own outputs (model labels) for a uint8 image [H, W, 3]."""
        boxes, labels, scores = self.session.run(None, {"image": image})
        return {"boxes": boxes, "labels": labels, "scores": scores}

    def __call__(self, image: ImageInput) -> dict[str, Any]:
        out = self.raw(load_image(image))
        return {"boxes": out["boxes"], "labels": self.category_ids[out["labels"]],
                "names": [self.class_names[i] for i in out["labels"]], "scores": out["scores"]}


# ---- parity ------------------------------------------------------------------------------------------------
def torch_detections(detector: GeneralizedRCNN, image: np.ndarray) -> dict[str, np.ndarray]:
    """Eager PyTorch detections for a uint8 image, the way users call the model (float CHW in [0, 1])."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    device = next(detector.parameters()).device
    with torch.no_grad():
        out = detector([x.to(device)])[0]
    return {k: out[k].cpu().numpy() for k in ("boxes", "labels", "scores")}


def compare_detections(name: str, image: np.ndarray, reference: dict[str, np.ndarray], onnx_out: dict[str, np.ndarray],
                       box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL) -> ParityCase:
    """Same count and labels, boxes and scores within tolerance; detections are paired by order, and by
    nearest same-label box where near-equal scores swapped places."""
    n_ref, n_out = len(reference["scores"]), len(onnx_out["scores"])
    figures: dict[str, Any] = {"image": f"{image.shape[0]}x{image.shape[1]}", "torch dets": n_ref, "onnx dets": n_out}
    if n_ref != n_out:
        return ParityCase(name, False, figures, f"{n_out} detections in onnxruntime, {n_ref} in PyTorch")
    order = _pair(reference, onnx_out)
    if order is None:
        return ParityCase(name, False, figures, "labels differ")
    box_diff = float(np.abs(reference["boxes"] - onnx_out["boxes"][order]).max()) if n_ref else 0.0
    score_diff = float(np.abs(reference["scores"] - onnx_out["scores"][order]).max()) if n_ref else 0.0
    figures.update({"max box diff": box_diff, "max score diff": score_diff})
    problems = ([f"box diff {box_diff:.3g} > {box_atol:g}"] if box_diff > box_atol else []) + \
               ([f"score diff {score_diff:.3g} > {score_atol:g}"] if score_diff > score_atol else [])
    return ParityCase(name, not problems, figures, "; ".join(problems))


def _pair(reference: dict[str, np.ndarray], onnx_out: dict[str, np.ndarray]) -> np.ndarray | None:
    """Index into ``onnx_out`` for each reference detection, or None when the labels cannot be matched."""
    n = len(reference["labels"])
    if np.array_equal(reference["labels"], onnx_out["labels"]):
        same_order = np.arange(n)
        if n == 0 or np.abs(reference["boxes"] - onnx_out["boxes"]).max() <= BOX_ATOL:
            return same_order
    free = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        candidates = np.flatnonzero(free & (onnx_out["labels"] == reference["labels"][i]))
        if not len(candidates):
            return None
        cost = np.abs(onnx_out["boxes"][candidates] - reference["boxes"][i]).max(1) + \
            np.abs(onnx_out["scores"][candidates] - reference["scores"][i]) * (BOX_ATOL / SCORE_ATOL)
        j = candidates[cost.argmin()]
        order[i], free[j] = j, False
    return order


def builtin_detector_cases() -> list[tuple[str, np.ndarray]]:
    """Landscape, portrait, small and odd sizes, and a blank image (nothing to detect)."""
    return [("landscape 480x640", synthetic_image(480, 640, seed=1)),
            ("portrait 640x427", synthetic_image(640, 427, seed=2)),
            ("small 150x200", synthetic_image(150, 200, seed=3)),
            ("odd 333x517", synthetic_image(333, 517, seed=4)),
            ("blank 480x640", blank_image(480, 640))]


def run_detector_parity(reference: Callable[[np.ndarray], dict[str, np.ndarray]],
                        onnx_run: Callable[[np.ndarray], dict[str, np.ndarray]],
                        cases: Sequence[tuple[str, np.ndarray]], box_atol: float = BOX_ATOL,
                        score_atol: float = SCORE_ATOL) -> ParityReport:
    report = ParityReport("detector parity (onnxruntime vs PyTorch)",
                          {"box atol (px)": box_atol, "score atol": score_atol})
    for name, image in cases:
        report.cases.append(compare_detections(name, image, reference(image), onnx_run(image), box_atol, score_atol))
    return report


# ---- checkpoints -------------------------------------------------------------------------------------------
def category_names(category_ids: Sequence[int], annotations: str | os.PathLike | None = None) -> list[str]:
    """Names of the dataset categories, from a COCO annotation file; without one, COCO's names when the ids
    are exactly COCO's 80, else the ids as text."""
    if annotations is not None:
        with open(annotations, encoding="utf-8") as f:
            known = {int(c["id"]): str(c["name"]) for c in json.load(f).get("categories", [])}
        missing = [c for c in category_ids if c not in known]
        if missing:
            raise ValueError(f"{annotations} does not name categories {missing[:10]}; pass the annotation file "
                             "the detector was trained with")
        return [known[int(c)] for c in category_ids]
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    coco = {i: n for i, n in enumerate(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
            if n not in ("N/A", "__background__")}
    if set(int(c) for c in category_ids) == set(coco):
        return [coco[int(c)] for c in category_ids]
    return [str(c) for c in category_ids]


class LoadedDetector(NamedTuple):
    model: GeneralizedRCNN     #: eval mode, weights from the checkpoint
    category_ids: list[int]    #: dataset category id of each model label (index 0, the background, is 0)
    annotations: Path | None   #: the run's COCO annotation file, when it is still there (category names)


def load_detector(name: str, checkpoint: str | os.PathLike, config_file: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> LoadedDetector:
    """Build detector ``name`` as its training run did and load ``checkpoint`` (a train_det.py checkpoint).

    The run's config is ``config_file`` or the ``config.yaml`` saved beside the checkpoint.
    """
    from nasnet_zoo.config import load_config

    from .checkpoint import CheckpointError, load_checkpoint, model_identity
    from .config import DetConfig
    from .run import build_model

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or foreign files raise many types
        raise CheckpointError(f"{checkpoint} is not a readable PyTorch checkpoint: {err}") from None
    if not isinstance(saved, dict) or "model" not in saved or "num_classes" not in saved:
        raise CheckpointError(f"{checkpoint} is not a tools/train_det.py checkpoint (needs 'model' and 'num_classes')")
    if config_file is None and (checkpoint.parent / "config.yaml").is_file():
        config_file = checkpoint.parent / "config.yaml"
    config = load_config(DetConfig(), config_file, overrides)
    config.model.name = name
    config.model.backbone_weights = ""  # the checkpoint holds every weight; nothing to fetch
    categories = [int(c) for c in saved.get("categories") or range(1, saved["num_classes"])]
    model = build_model(config, saved["num_classes"])
    load_checkpoint(checkpoint, model, model_identity(name, saved["num_classes"], saved.get("categories", categories)))
    found = [Path(f) for f in (config.data.val_ann, config.data.train_ann) if f and Path(f).is_file()]
    return LoadedDetector(model.eval(), [0] + categories, found[0] if found else None)
