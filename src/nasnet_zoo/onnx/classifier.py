"""Classifiers in ONNX: export with the preprocessing inside the graph, and :class:`OnnxClassifier` to run them.

The exported classifier takes images as they come: a uint8 RGB batch [N, H, W, 3] of any height and width.
The graph resizes it (bilinear, antialiased) to the model's input size, scales it to [0, 1], normalises it
with the model's mean/std and returns logits [N, num_classes]. Because the network itself always sees the
same size, its TF "SAME" paddings are fixed and the export is exact for every input size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils.extras import require
from .files import require_onnx, save_onnx
from .images import ImageInput, load_image
from .quiet import known_export_warnings_filtered
from .session import open_session

#: Resize with antialiasing needs opset 18.
CLASSIFIER_OPSET = 18


class ClassifierGraph(nn.Module):
    """uint8 images [N, H, W, 3] -> logits: resize, scale, normalise, classify."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # Folding /255 into the normalisation saves a pass over the image.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(images))


def default_class_names(pretrained_cfg: dict[str, Any], num_classes: int) -> list[str]:
    """Human-readable class names for a zoo model's label space (ImageNet-1k, CIFAR-10), else ``class_<i>``."""
    dataset = pretrained_cfg.get("dataset")
    if dataset == "imagenet-1k" and num_classes == 1000:
        from torchvision.models import ResNet50_Weights
        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if dataset == "cifar-10" and num_classes == 10:
        from ..data.cifar import CIFAR10_CLASSES
        return list(CIFAR10_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


def export_classifier(model: nn.Module, path: str | os.PathLike, *, model_name: str,
                      input_size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                      class_names: Sequence[str] | None = None, opset: int = CLASSIFIER_OPSET,
                      show_known_warnings: bool = False) -> Path:
    """Export an eval-mode classifier with dynamic batch, height and width (torch.export based exporter).

    onnxruntime folds BN and shares repeated ReLUs itself, so the model is exported as it is. Known harmless
    export warnings are dropped unless ``show_known_warnings`` (:mod:`nasnet_zoo.onnx.quiet`).
    """
    require_onnx()
    require("onnxscript", extra="onnx", feature="ONNX export of classifiers (torch.export based)")
    if opset < CLASSIFIER_OPSET:
        raise ValueError(f"opset {opset} is too old: antialiased Resize needs opset >= {CLASSIFIER_OPSET}")
    graph = ClassifierGraph(model, input_size, mean, std).eval()
    example = torch.randint(0, 256, (2, input_size[0] + 17, input_size[1] + 31, 3), dtype=torch.uint8)
    with torch.no_grad():
        num_classes = int(graph(example).shape[1])
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names given for a model with {num_classes} outputs")
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("height", min=2),
            2: torch.export.Dim("width", min=2)}
    with known_export_warnings_filtered(show_known_warnings):
        program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=opset, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes={"images": dims}, verbose=False)
    metadata = {
        "task": "classification", "model_name": model_name,
        "class_names": list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)],
        "input_spec": {"name": "images", "dtype": "uint8", "shape": ["batch", "height", "width", 3],
                       "channels": "RGB", "range": [0, 255]},
        "output_spec": {"name": "logits", "dtype": "float32", "shape": ["batch", num_classes]},
        "preprocessing": {"resize": list(graph.input_size), "interpolation": "bilinear, antialiased",
                          "scale": "1/255", "mean": list(mean), "std": list(std)},
        "opset": opset,
    }
    return save_onnx(program.model_proto, path, metadata)


class OnnxClassifier:
    """Run an exported classifier on paths, PIL images or uint8 arrays of any size.

    ``providers=None`` picks CUDA when onnxruntime-gpu sees a GPU, else CPU; ``.providers`` reports what
    the session really runs; ``threads`` caps onnxruntime's intra-op threads.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        self.session, self.metadata = open_session(path, providers, task="classification", threads=threads)
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.model_name: str = self.metadata["model_name"]
        self._input = self.session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits for a uint8 batch [N, H, W, 3] (what the graph takes)."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            got = f"{images.dtype} array {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"logits() takes a uint8 batch [N, H, W, 3], got {got}; use the instance call for single images")
        return self.session.run(None, {self._input: images})[0]

    def __call__(self, image: ImageInput, topk: int = 5) -> list[dict[str, Any]]:
        """The ``topk`` most likely classes: ``{"index", "name", "probability"}``, most likely first."""
        logits = self.logits(load_image(image)[None])[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[: max(1, min(topk, len(probs)))]
        return [{"index": int(i), "name": self.class_names[i], "probability": float(probs[i])} for i in order]
