"""Detector designs: wiring into torchvision, the paper's split reproducing the NASNet, freezing options."""
from __future__ import annotations

import gc
import types

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from nasnet_zoo import NASNET_A, build_nasnet, create_model
from nasnet_zoo.detection import (NASNetBoxHead, NASNetFPNBackbone, NASNetRPNBackbone, build_detector,
                                  freeze_batchnorm, list_detectors, set_trainable_stages)
from nasnet_zoo.detection.modeling.backbones import build_part
from nasnet_zoo.detection.modeling.freeze import STAGES, freeze_stages, stage_of
from nasnet_zoo.inference import optimize_for_inference
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
        for design in ("fpn", "c4"):
            assert f"fasterrcnn_nasnet_a_{size}_{design}" in names
    assert not any(name.endswith("_nas") for name in names)
    with pytest.raises(ValueError, match="did you mean"):
        build_detector("fasterrcnn_nasnet_a_mobile_fnp")
    with pytest.raises(ValueError, match="background"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=1)


@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_named_detector_trains_and_predicts(design):
    extra = {"roi_output_size": 7} if design == "c4" else {}
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


@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_any_genotype_builds_and_trains(design):
    model = build_detector(f"fasterrcnn_nasnet_{design}", num_classes=3, genotype=_other_genotype(),
                           backbone_args=dict(TINY), **({"roi_output_size": 7} if design == "c4" else {}), **LIGHT)
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


def test_fpn_in_torchvisions_mobile_layout():
    """out_indices (3, 4): pyramid on strides 16 and 32 plus the pooled level, several anchor sizes per level."""
    model = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=4, backbone_args=dict(TINY),
                           out_indices=(3, 4), anchor_sizes=[(16, 32, 64)] * 3, **LIGHT)
    shapes = model.backbone.output_shape()
    assert {n: s.stride for n, s in shapes.items()} == {"0": 16, "1": 32, "pool": 64}
    assert model.roi_heads.box_roi_pool.featmap_names == ["0", "1"]
    assert model.rpn.head.cls_logits.out_channels == 9  # 3 sizes x 3 aspect ratios per location
    model.train()
    sum(model([torch.rand(3, 64, 64)], _targets(1)).values()).backward()
    with pytest.raises(ValueError, match="one entry per pyramid level"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=4, backbone_args=dict(TINY),
                       out_indices=(3, 4), **LIGHT)
    with pytest.raises(ValueError, match="same number of sizes"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=4, backbone_args=dict(TINY),
                       out_indices=(3, 4), anchor_sizes=[16, (32, 64), 128], **LIGHT)


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


def test_freeze_at_is_the_inverse_count_of_trainable_stages():
    """detectron2's FREEZE_AT (the d2 engine) and trainable_stages (the torchvision engine) share one rule."""
    def trained(model):
        return [name for name, p in model.named_parameters() if p.requires_grad]

    for freeze_at in range(len(STAGES) + 1):
        a, b = (build_nasnet(NASNET_A, cells_per_stack=1, num_conv_filters=4, num_classes=0, aux_head=False)
                for _ in range(2))
        freeze_stages(a, freeze_at)
        set_trainable_stages(b, len(STAGES) - freeze_at)
        assert trained(a) == trained(b)
    with pytest.raises(ValueError, match="MODEL.NASNET.FREEZE_AT must be in"):
        freeze_stages(a, 5, key="MODEL.NASNET.FREEZE_AT")


def test_backbone_weights_of_another_architecture_are_refused():
    state = create_model("nasnet_a_mobile", num_classes=10, **dict(TINY, num_conv_filters=8)).state_dict()
    with pytest.raises(ValueError, match="does not fit this backbone"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                       backbone_weights=state)
    good = create_model("nasnet_a_mobile", num_classes=10, **TINY).state_dict()
    model = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                           backbone_weights=good, frozen_bn=False)
    torch.testing.assert_close(model.backbone.body.stem.conv.weight, good["stem.conv.weight"])


@pytest.mark.parametrize("old, new", [("fasterrcnn_nasnet_a_mobile_nas", "fasterrcnn_nasnet_a_mobile_c4"),
                                      ("fasterrcnn_nasnet_nas", "fasterrcnn_nasnet_c4")])
def test_old_split_design_names_warn_and_build_the_c4_design(old, new):
    args = dict(num_classes=3, backbone_args=dict(TINY), roi_output_size=7, **LIGHT)
    if old == "fasterrcnn_nasnet_nas":
        args["genotype"] = NASNET_A
    with pytest.warns(FutureWarning, match=f"now called '{new}'"):
        model = build_detector(old, **args)
    torch.manual_seed(0)
    assert isinstance(model.backbone, NASNetRPNBackbone) and isinstance(model.roi_heads.box_head, NASNetBoxHead)
    assert list(model.state_dict()) == list(build_detector(new, **args).state_dict())


def _reachable_tensors(root: object) -> list[torch.Tensor]:
    """Every tensor reachable from ``root`` through Python references (attributes, bound methods, closures)."""
    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        else:
            stack.extend(gc.get_referents(obj))
    return found


def test_backbones_and_their_fused_copies_hold_none_of_the_classifier():
    """A backbone keeps the modules it runs: not the classifier, the aux head or cells of the other half."""
    model = create_model("nasnet_a_mobile", num_classes=7, **TINY)
    head_shapes = {tuple(p.shape) for p in [*model.classifier.parameters(), *model.aux_head.parameters()]}
    parts = {"fpn": NASNetFPNBackbone(model, 16), "rpn": NASNetRPNBackbone(model), "box": NASNetBoxHead(model)}
    parts["fused_fpn_body"] = optimize_for_inference(parts["fpn"].body)
    parts["fused_rpn"] = optimize_for_inference(parts["rpn"])
    for name, part in parts.items():
        reachable = _reachable_tensors(part)
        own = {p.data_ptr() for p in part.state_dict().values()}
        assert {t.data_ptr() for t in reachable if t.numel()} <= own | {0}, name  # nothing beyond its own tensors
        assert not {tuple(t.shape) for t in reachable} & head_shapes, name
    ptrs = lambda m: {p.data_ptr() for p in m.parameters()}  # noqa: E731
    assert not ptrs(parts["rpn"]) & ptrs(parts["box"])  # the two halves share no cell
    assert ptrs(parts["rpn"]) | ptrs(parts["box"]) == ptrs(model) - ptrs(model.classifier) - ptrs(model.aux_head)


def test_build_part_allocates_only_the_part_and_initialises_it():
    part = build_part(lambda: create_model("nasnet_a_large", num_classes=0, aux_head=False), NASNetBoxHead)
    reference = NASNetBoxHead(create_model("nasnet_a_large", num_classes=0, aux_head=False))
    assert list(part.state_dict()) == list(reference.state_dict())
    assert all(not t.is_meta for t in _reachable_tensors(part))
    bn = part.cells["cell_17"].pre0.bn
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    conv, ref_conv = part.cells["cell_17"].pre0.conv.weight, reference.cells["cell_17"].pre0.conv.weight
    assert 0.5 < conv.std() / ref_conv.std() < 2  # the constructor's init, not zeros or uninitialised memory


def test_stages_use_detectron2_names():
    assert STAGES == ("stage2", "stage3", "stage4", "stage5")
    assert [stage_of(s) for s in (1, 2, 4, 8, 16, 32, 64)] == ["stage2"] * 3 + ["stage3", "stage4", "stage5", "stage5"]


def test_every_shipped_detector_config_builds():
    """Each configs/det/*.yaml names a detector and options its builder accepts (narrow cells, no weights)."""
    from pathlib import Path

    import nasnet_zoo.configs
    from nasnet_zoo.config import load_config
    from nasnet_zoo.detection.config import DetConfig
    from nasnet_zoo.detection.modeling.trained import build_model

    shipped = sorted((Path(nasnet_zoo.configs.__file__).parent / "det").glob("*.yaml"))
    assert len(shipped) >= 7
    levels = {}
    for path in shipped:
        cfg = load_config(DetConfig(), path)
        cfg.model.backbone_weights = ""
        cfg.model.backbone_args = {**cfg.model.backbone_args, **TINY}
        levels[path.stem] = list(build_model(cfg, num_classes=3).backbone.output_shape())
    assert levels["coco_mobile_fpn_16_32"] == ["0", "1", "pool"]
    assert levels["coco_mobile_fpn"] == ["0", "1", "2", "3", "pool"] and levels["coco_large_c4"] == ["0"]
