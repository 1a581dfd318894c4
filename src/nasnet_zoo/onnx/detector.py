"""Whole torchvision-style Faster R-CNN detectors in ONNX: export with pre- and postprocessing inside, and
:class:`OnnxDetector` to run them.

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
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales

from .files import require_onnx, save_onnx
from .images import ImageInput, load_image
from .parity import synthetic_image
from .quiet import known_export_warnings_filtered
from .session import open_session

#: RoIAlign(aligned=True) exports correctly only from opset 16; torchvision's detection symbolics target 17.
DETECTOR_OPSET = 17
MIN_DETECTOR_OPSET = 16


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
        maps = [features[name] for name in pool.featmap_names if name in features]  # as torchvision filters them
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
        if isinstance(detector.roi_heads.box_roi_pool, MultiScaleRoIAlign):  # also the C4 design's deferred one
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
                    opset: int = DETECTOR_OPSET, example_size: tuple[int, int] = (427, 640),
                    show_known_warnings: bool = False) -> Path:
    """Export an eval-mode torchvision-style detector with dynamic image height and width.

    ``class_names[i]`` and ``category_ids[i]`` describe model label ``i`` (index 0 is the background).
    The tracer's and exporter's known harmless warnings are dropped unless ``show_known_warnings``
    (:mod:`nasnet_zoo.onnx.quiet`).
    """
    onnx = require_onnx()
    if opset < MIN_DETECTOR_OPSET:
        raise ValueError(f"opset {opset} is too old: RoIAlign(aligned=True) exports correctly only from opset "
                         f"{MIN_DETECTOR_OPSET}")
    num_classes = detector.roi_heads.box_predictor.cls_score.out_features
    category_ids = list(range(num_classes)) if category_ids is None else list(category_ids)
    if len(class_names) != num_classes or len(category_ids) != num_classes:
        raise ValueError(f"the detector has {num_classes} labels (background included) but {len(class_names)} class "
                         f"names and {len(category_ids)} category ids were given")
    graph = DetectorGraph(detector).eval()
    example = torch.from_numpy(synthetic_image(*example_size, seed=0))
    buffer = io.BytesIO()
    with torch.no_grad(), known_export_warnings_filtered(show_known_warnings):
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


def torch_detections(detector: GeneralizedRCNN, image: np.ndarray) -> dict[str, np.ndarray]:
    """Eager PyTorch detections for a uint8 image, the way users call the model (float CHW in [0, 1])."""
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    device = next(detector.parameters()).device
    with torch.no_grad():
        out = detector([x.to(device)])[0]
    return {k: out[k].cpu().numpy() for k in ("boxes", "labels", "scores")}
