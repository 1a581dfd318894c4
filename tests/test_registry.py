"""The one registry: classifiers and detectors in one leaf module, each kind with its own names."""
from __future__ import annotations

import pytest
from torch import nn

import nasnet_zoo
from nasnet_zoo import registry
from nasnet_zoo.detection import list_detectors, register_detector
from nasnet_zoo.detection.modeling import builders


def test_classifiers_and_detectors_live_in_the_one_registry():
    assert registry.registered_names("model") == nasnet_zoo.list_models()
    assert registry.registered_names("detector") == list_detectors()
    assert {"fasterrcnn_nasnet_a_mobile_fpn", "fasterrcnn_nasnet_c4"} <= set(list_detectors())
    assert registry.builder("detector", "fasterrcnn_nasnet_a_mobile_fpn") is builders.fasterrcnn_nasnet_a_mobile_fpn
    assert registry.builder("model", "nasnet_a_mobile") is nasnet_zoo.models.nasnet_a.nasnet_a_mobile
    assert not registry.is_model("fasterrcnn_nasnet_a_mobile_fpn")  # names of one kind are not another's


def test_unknown_names_and_kinds_are_refused_with_the_closest_name():
    with pytest.raises(ValueError, match=r"unknown detector 'fasterrcnn_nasnet_a_mobile_fnp'; did you mean "
                                         r"fasterrcnn_nasnet_a_mobile_fpn.*list_detectors\(\)"):
        registry.builder("detector", "fasterrcnn_nasnet_a_mobile_fnp")
    with pytest.raises(ValueError, match=r"unknown model 'nasnet_a_mobil'; did you mean nasnet_a_mobile"):
        registry.builder("model", "nasnet_a_mobil")
    with pytest.raises(ValueError, match="unknown kind of builder 'backbone'"):
        registry.registered_names("backbone")


def test_a_name_registers_once_per_kind(monkeypatch):
    monkeypatch.setitem(registry._BUILDERS, "detector", dict(registry._BUILDERS["detector"]))

    def fasterrcnn_nasnet_a_mobile_fpn(**options) -> nn.Module:
        return nn.Identity()
    with pytest.raises(ValueError, match="detector 'fasterrcnn_nasnet_a_mobile_fpn' is registered twice"):
        register_detector(fasterrcnn_nasnet_a_mobile_fpn)

    def toy_detector(**options) -> nn.Module:
        return nn.Identity()
    register_detector(toy_detector)
    assert "toy_detector" in list_detectors() and "toy_detector" not in nasnet_zoo.list_models()


def test_a_renamed_name_warns_where_it_is_used_and_builds_the_new_one(monkeypatch):
    monkeypatch.setitem(registry._RENAMED, "model", dict(registry._RENAMED["model"]))
    registry.register_renamed("model", "nasnet_mobile", "nasnet_a_mobile", why="NASNet-A's cells")
    with pytest.warns(FutureWarning, match=r"model 'nasnet_mobile' is now called 'nasnet_a_mobile' \(NASNet-A's "
                                           r"cells\)") as caught:
        model = nasnet_zoo.create_model("nasnet_mobile", num_classes=3, cells_per_stack=1, num_conv_filters=4)
    assert caught[0].filename == __file__  # the warning points at the caller, not at the package
    assert model.pretrained_cfg["architecture"] == "nasnet_a_mobile"
    assert "nasnet_mobile" not in nasnet_zoo.list_models()
