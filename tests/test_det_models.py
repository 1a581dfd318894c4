"""Detector designs: wiring into torchvision, the paper's split reproducing the NASNet, freezing options."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from nasnet_zoo import NASNET_A, build_nasnet, create_model
from nasnet_zoo.detection import (NASNetBoxHead, NASNetFPNBackbone, NASNetRPNBackbone, build_detector,
                                  freeze_batchnorm, list_detectors, set_trainable_stages)
from nasnet_zoo.genotypes import Block, CellGenotype, Genotype

TINY = dict(cells_per_stack=1, num_conv_filters=4, stem_multiplier=0.25)
LIGHT = dict(min_size=64, max_size=64, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=8,
             rpn_pre_nms_top_n_train=50, rpn_post_nms_top_n_train=16, box_batch_size_per_image=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def _targets(n: int) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([2])} for _ in range(n)]


def _other_genotype() -> Genotype:
    """A searched-looking genotype unlike NASNet-A (concat combiners, other ops)."""
    normal = CellGenotype(blocks=(Block((0, 1), ("conv_3x3", "max_pool_3x3"), "add"),
                                  Block((2, 1), ("sep_conv_3x3", "identity"), "concat")), concat=(3, 0))
    reduction = CellGenotype(blocks=(Block((0, 1), ("max_pool_3x3", "sep_conv_5x5"), "add"),
                                     Block((2, 0), ("conv_1x1", "avg_pool_3x3"), "add")), concat=(2, 3))
    return Genotype(normal=normal, reduction=reduction, name="test")


def test_registry_lists_both_designs_for_both_sizes():
    names = set(list_detectors())
    for size in ("mobile", "large"):
        for design in ("fpn", "nas"):
            assert f"fasterrcnn_nasnet_a_{size}_{design}" in names
    with pytest.raises(ValueError, match="did you mean"):
        build_detector("fasterrcnn_nasnet_a_mobile_fnp")
    with pytest.raises(ValueError, match="background"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=1)


@pytest.mark.parametrize("design", ["fpn", "nas"])
def test_named_detector_trains_and_predicts(design):
    extra = {"roi_output_size": 7} if design == "nas" else {}
    model = build_detector(f"fasterrcnn_nasnet_a_mobile_{design}", num_classes=5, backbone_args=dict(TINY),
                           **extra, **LIGHT)
    model.train()
    losses = model([torch.rand(3, 64, 80), torch.rand(3, 70, 64)], _targets(2))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 96)])
    assert out[0]["boxes"].shape[1] == 4 and len(out[0]["boxes"]) == len(out[0]["scores"]) <= 100
    assert (out[0]["labels"] >= 1).all() and (out[0]["labels"] < 5).all()


@pytest.mark.parametrize("design", ["fpn", "nas"])
def test_any_genotype_builds_and_trains(design):
    model = build_detector(f"fasterrcnn_nasnet_{design}", num_classes=3, genotype=_other_genotype(),
                           backbone_args=dict(TINY), **({"roi_output_size": 7} if design == "nas" else {}), **LIGHT)
    model.train()
    losses = model([torch.rand(3, 64, 64)], _targets(1))
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="cells_per_stack"):
        build_detector(f"fasterrcnn_nasnet_{design}", num_classes=3, genotype=_other_genotype())


def test_large_backbones_describe_their_outputs():
    model = create_model("nasnet_a_large", num_classes=0, aux_head=False)
    fpn = NASNetFPNBackbone(model, out_channels=256)
    assert {k: (v.channels, v.stride) for k, v in fpn.output_shape().items()} == \
        {"0": (256, 4), "1": (256, 8), "2": (256, 16), "3": (256, 32), "pool": (256, 64)}
    rpn = NASNetRPNBackbone(model)
    head = NASNetBoxHead(model)
    # The paper's design: RPN on two concatenated 2016-channel stride-16 cells; the head ends at 4032 (6 @ 4032).
    assert rpn.output_shape()["0"].channels == 2 * 2016 and rpn.output_shape()["0"].stride == 16
    assert head.out_channels == 4032 and list(head.cells)[0] == "reduction_cell_1"


@pytest.mark.parametrize("arch,args", [("nasnet_a_mobile", dict(TINY)),
                                       ("nasnet_a_large", dict(cells_per_stack=2, num_conv_filters=4))])
def test_paper_split_reproduces_the_classifier_trunk(arch, args):
    """Backbone then box head on the whole map equals the NASNet's own last cell (mobile and large wiring)."""
    model = create_model(arch, num_classes=0, aux_head=False, **args).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = torch.relu(model.forward_features(x)).mean((2, 3))
        crops = NASNetRPNBackbone(model)(x)["0"]
        got = NASNetBoxHead(model)(crops)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_fpn_body_returns_the_cells_at_strides_4_to_32():
    model = create_model("nasnet_a_mobile", num_classes=0, aux_head=False, **TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        points = model.end_points(x)
        maps = NASNetFPNBackbone(model, 16).body(x)
    for got, name in zip(maps, ["cell_stem_0", "Cell_0", "Cell_1", "Cell_2"]):
        torch.testing.assert_close(got, points[name])


def test_frozen_batchnorm_and_trainable_stages():
    model = build_nasnet(NASNET_A, cells_per_stack=1, num_conv_filters=4, num_classes=0, aux_head=False)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model.forward_features(x)
    set_trainable_stages(model, 2)
    freeze_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), before, rtol=1e-5, atol=1e-6)
    trainable = {name for name, cell in model.cells.items() if all(p.requires_grad for p in cell.parameters())}
    assert trainable == {"reduction_cell_0", "cell_1", "reduction_cell_1", "cell_2"}  # strides 16 and 32
    assert not any(p.requires_grad for p in model.stem.parameters())
    with pytest.raises(ValueError, match="trainable_stages"):
        set_trainable_stages(model, 5)


def test_backbone_weights_of_another_architecture_are_refused():
    state = create_model("nasnet_a_mobile", num_classes=10, **dict(TINY, num_conv_filters=8)).state_dict()
    with pytest.raises(ValueError, match="do not fit this backbone"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                       backbone_weights=state)
    good = create_model("nasnet_a_mobile", num_classes=10, **TINY).state_dict()
    model = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                           backbone_weights=good, frozen_bn=False)
    torch.testing.assert_close(model.backbone.body.stem.conv.weight, good["stem.conv.weight"])
