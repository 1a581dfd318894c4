"""Export a detectron2 NASNet detector to ONNX through detectron2's ``TracingAdapter``, and check it.

The exported graph takes one CHW image (pixel values in ``INPUT.FORMAT``, already resized as the model's
data mapper would) and returns boxes, classes and scores before the final rescale to the original size,
like detectron2's own ``export_model.py --export-method tracing``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN

from nasnet_zoo.utils.io import atomic_path

#: RoIAlign with ``aligned=True`` exports correctly only from opset 16.
MIN_OPSET = 16


def _inference(model: GeneralizedRCNN, inputs: list[dict[str, torch.Tensor]]) -> list[dict]:
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def tracing_adapter(model: GeneralizedRCNN, image: torch.Tensor) -> TracingAdapter:
    """The model as a function of one image tensor with flat tensor outputs."""
    if not isinstance(model, GeneralizedRCNN):
        raise TypeError(f"expected a detectron2 GeneralizedRCNN, got {type(model).__name__}")
    return TracingAdapter(model.eval(), [{"image": image}], _inference)


def export_onnx(model: GeneralizedRCNN, image: torch.Tensor, path: str, opset: int = 17) -> TracingAdapter:
    """Trace ``model`` on ``image`` and write the ONNX graph atomically; returns the adapter (it holds the
    output schema that turns flat outputs back into ``Instances``).

    Height and width stay dynamic: the graph pads to the backbone's size divisibility itself.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: RoIAlign(aligned=True) exports correctly from opset {MIN_OPSET}")
    adapter = tracing_adapter(model, image)
    with torch.no_grad(), atomic_path(path) as tmp:
        torch.onnx.export(adapter, (image,), str(tmp), opset_version=opset, dynamo=False,
                          input_names=["image"], do_constant_folding=True,
                          dynamic_axes={"image": {1: "height", 2: "width"}})
    return adapter


@dataclass
class Comparison:
    """How the ONNX outputs differ from PyTorch's on one image."""

    num_detections: int
    same_count: bool
    same_labels: bool
    max_box_diff: float
    max_score_diff: float

    def ok(self, box_tol: float = 1e-2, score_tol: float = 1e-4) -> bool:
        return self.same_count and self.same_labels and self.max_box_diff <= box_tol and \
            self.max_score_diff <= score_tol


def compare_with_onnxruntime(adapter: TracingAdapter, onnx_path: str,
                             images: Sequence[torch.Tensor]) -> list[Comparison]:
    """Run each image through the PyTorch model and through onnxruntime (CPU provider); compare detections.

    ``adapter`` is what ``export_onnx`` returned: its output schema turns onnxruntime's flat outputs back
    into ``Instances``.
    """
    import onnxruntime as ort

    if not os.path.isfile(onnx_path):
        raise FileNotFoundError(f"{onnx_path} does not exist; export it with export_onnx first")
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    if "CPUExecutionProvider" not in session.get_providers():
        raise RuntimeError(f"onnxruntime offers {session.get_providers()}, not the CPU provider")
    input_name = session.get_inputs()[0].name
    return [_compare(adapter, session.run(None, {input_name: image.numpy()}), image) for image in images]


def _compare(adapter: TracingAdapter, flat: list[np.ndarray], image: torch.Tensor) -> Comparison:
    with torch.no_grad():
        expected = _inference(adapter.model.eval(), [{"image": image}])[0]["instances"]
    got = adapter.outputs_schema([torch.from_numpy(np.asarray(o)) for o in flat])[0]["instances"]
    if len(expected) != len(got):
        return Comparison(len(expected), False, False, float("inf"), float("inf"))
    same_labels = torch.equal(expected.pred_classes, got.pred_classes.to(expected.pred_classes.dtype))
    if not len(expected):
        return Comparison(0, True, same_labels, 0.0, 0.0)
    box_diff = (expected.pred_boxes.tensor - got.pred_boxes.tensor).abs().max().item()
    score_diff = (expected.scores - got.scores).abs().max().item()
    return Comparison(len(expected), True, same_labels, box_diff, score_diff)
