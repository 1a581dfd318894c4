"""The ONNX exports drop only the warnings documented as known and harmless (docs/onnx.md); ``--verbose``
(``show_known_warnings=True``) brings them back, and any other warning passes either way."""
from __future__ import annotations

import warnings

import pytest
import torch

from nasnet_zoo.detection.modeling.builders import build_detector
from nasnet_zoo.onnx.detector import export_detector
from nasnet_zoo.onnx.quiet import KNOWN_EXPORT_WARNINGS, known_export_warnings_filtered


def _export(tmp_path, show: bool) -> list[warnings.WarningMessage]:
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, min_size=96, max_size=128,
                           backbone_args={"cells_per_stack": 1, "num_conv_filters": 8}).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, every time, whatever the test runner's filters
        export_detector(model, tmp_path / f"det_{show}.onnx", model_name="tiny", class_names=["bg", "a", "b"],
                        show_known_warnings=show)
    return list(caught)


def test_detector_export_is_quiet_and_verbose_brings_the_warnings_back(tmp_path) -> None:
    quiet = _export(tmp_path, show=False)
    assert quiet == [], [f"{w.category.__name__} {w.filename}:{w.lineno} {w.message}" for w in quiet]
    loud = _export(tmp_path, show=True)
    kinds = {w.category for w in loud}
    assert torch.jit.TracerWarning in kinds and len(loud) >= 10
    # our own SAME padding's trace warning is among those shown, and filtered only by its own entry
    assert any(w.filename.endswith("layers/padding.py") for w in loud)


def test_other_warnings_pass_through_the_filter() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with known_export_warnings_filtered():
            warnings.warn("Constant folding - Only steps=1 can be constant folded", UserWarning)  # our module
            warnings.warn("Converting a tensor to a Python integer", torch.jit.TracerWarning)  # not torchvision
            warnings.warn("something else", UserWarning)
    assert [str(w.message) for w in caught] == ["Constant folding - Only steps=1 can be constant folded",
                                                 "Converting a tensor to a Python integer", "something else"]


@pytest.mark.parametrize("entry", KNOWN_EXPORT_WARNINGS, ids=lambda e: e[2][:40])
def test_every_filter_names_a_category_a_module_and_a_message(entry) -> None:
    category, module, message = entry
    assert issubclass(category, Warning) and module and len(message) >= 20
