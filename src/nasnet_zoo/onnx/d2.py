"""detectron2 detectors in ONNX through detectron2's ``TracingAdapter``, and their parity check.

The exported graph takes one CHW image (pixel values in ``INPUT.FORMAT``, already resized as the model's
data mapper would) and returns boxes, classes and scores before the final rescale to the original size,
like detectron2's own ``export_model.py --export-method tracing``. The file carries the same kind of
metadata as the other exports (task ``"detectron2"``) and is compared with the same tolerances and report.

detectron2 is imported inside the functions, so ``nasnet_zoo.onnx`` imports without it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .files import require_onnx, save_onnx
from .parity import TOLERANCES, ParityReport, Tolerances, run_detector_parity
from .quiet import known_export_warnings_filtered
from .session import open_session

if TYPE_CHECKING:
    from detectron2.export import TracingAdapter
    from detectron2.modeling import GeneralizedRCNN

#: RoIAlign with ``aligned=True`` exports correctly only from opset 16.
MIN_D2_OPSET = 16
D2_TASK = "detectron2"


def _import_d2() -> Any:
    try:
        import detectron2.export
        import detectron2.modeling
    except ImportError as err:
        raise ImportError("exporting a detectron2 model needs detectron2 (see docs/detectron2.md for the "
                          "source build)") from err
    return detectron2


def _inference(model: GeneralizedRCNN, inputs: list[dict[str, torch.Tensor]]) -> list[dict]:
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def tracing_adapter(model: GeneralizedRCNN, image: torch.Tensor) -> TracingAdapter:
    """The model as a function of one image tensor with flat tensor outputs."""
    d2 = _import_d2()
    if not isinstance(model, d2.modeling.GeneralizedRCNN):
        raise TypeError(f"expected a detectron2 GeneralizedRCNN, got {type(model).__name__}")
    return d2.export.TracingAdapter(model.eval(), [{"image": image}], _inference)


def export_d2_detector(model: GeneralizedRCNN, image: torch.Tensor, path: str | os.PathLike, opset: int = 17,
                       model_name: str | None = None, show_known_warnings: bool = False) -> TracingAdapter:
    """Trace ``model`` on ``image`` and write the ONNX graph atomically; returns the adapter (it holds the
    output schema that turns flat outputs back into ``Instances``).

    Height and width stay dynamic: the graph pads to the backbone's size divisibility itself. Known harmless
    export warnings are dropped unless ``show_known_warnings`` (:mod:`nasnet_zoo.onnx.quiet`).
    """
    onnx = require_onnx()
    if opset < MIN_D2_OPSET:
        raise ValueError(f"opset {opset} is too old: RoIAlign(aligned=True) exports correctly from opset "
                         f"{MIN_D2_OPSET}")
    adapter = tracing_adapter(model, image)
    buffer = io.BytesIO()
    with torch.no_grad(), known_export_warnings_filtered(show_known_warnings):
        torch.onnx.export(adapter, (image,), buffer, opset_version=opset, dynamo=False,
                          input_names=["image"], do_constant_folding=True,
                          dynamic_axes={"image": {1: "height", 2: "width"}})
    name = model_name or f"detectron2 GeneralizedRCNN with {type(model.backbone).__name__}"
    metadata = {"task": D2_TASK, "model_name": name,
                "input_spec": {"name": "image", "dtype": "float32", "shape": [3, "height", "width"],
                               "channels": "INPUT.FORMAT, resized by the model's data mapper"},
                "output_spec": "flat Instances fields (pred_boxes, pred_classes, scores) before the rescale to "
                               "the original size; TracingAdapter.outputs_schema rebuilds them",
                "opset": opset}
    save_onnx(onnx.load_from_string(buffer.getvalue()), Path(path), metadata)
    return adapter


def _detections(instances: Any) -> dict[str, np.ndarray]:
    return {"boxes": instances.pred_boxes.tensor.detach().cpu().numpy(),
            "labels": instances.pred_classes.detach().cpu().numpy().astype(np.int64),
            "scores": instances.scores.detach().cpu().numpy()}


def run_d2_parity(adapter: TracingAdapter, path: str | os.PathLike, images: Sequence[torch.Tensor],
                  providers: Sequence[str] | None = None, tolerances: Tolerances = TOLERANCES) -> ParityReport:
    """Run each CHW image through the PyTorch model and through onnxruntime; compare the detections.

    ``adapter`` is what :func:`export_d2_detector` returned: its output schema turns onnxruntime's flat
    outputs back into ``Instances``. ``providers=None`` chooses as every session here does.
    """
    session, _ = open_session(path, providers, task=D2_TASK)
    input_name = session.get_inputs()[0].name
    model = adapter.model.eval()

    def reference(image: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return _detections(_inference(model, [{"image": image}])[0]["instances"])

    def onnx_run(image: torch.Tensor) -> dict[str, np.ndarray]:
        flat = session.run(None, {input_name: image.numpy()})
        return _detections(adapter.outputs_schema([torch.from_numpy(np.asarray(o)) for o in flat])[0]["instances"])

    cases = [(f"image {i}", image) for i, image in enumerate(images)]
    return run_detector_parity(reference, onnx_run, cases, tolerances,
                               title="detectron2 detector parity (onnxruntime vs PyTorch)")
