"""``optimize_for_inference`` changes speed, not outputs: checked against TF-slim's end points on real photos,
against the unfused model on odd and even sizes, in both padding modes and on a genotype using every op."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo import Block, CellGenotype, Genotype, build_nasnet
from nasnet_zoo.convert import convert_state_dict
from nasnet_zoo.inference import fold_bn, optimize_for_inference
from nasnet_zoo.testing import max_diff, randomize_batchnorm

TOL = 1e-4


@torch.no_grad()
def test_fused_mobile_reproduces_tf_slim_end_points(tf_mobile) -> None:
    model = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=1001).eval()
    model.load_state_dict(convert_state_dict(tf_mobile.variables, source="tf"), strict=False)
    images = torch.from_numpy(np.ascontiguousarray(tf_mobile.images.transpose(0, 3, 1, 2)))  # two COCO photos
    points = optimize_for_inference(model).end_points(images)
    for name, tf_value in tf_mobile.end_points.items():
        if name == "Predictions":
            continue
        ours = points[name]
        ours = ours.permute(0, 2, 3, 1) if ours.dim() == 4 else ours
        assert tf_value.max_diff(ours.numpy()) < TOL, name


@pytest.fixture(scope="module", params=["tf", "timm"])
def mobile_pair(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = randomize_batchnorm(nasnet_zoo.create_model("nasnet_a_mobile", padding=request.param, num_classes=10))
    return model, optimize_for_inference(model)


@torch.no_grad()
@pytest.mark.parametrize("size", [97, 96])  # odd sizes pad symmetrically, even ones put the extra cell last
def test_fused_mobile_equals_unfused(mobile_pair, size: int) -> None:
    model, fused = mobile_pair
    x = torch.randn(1, 3, size, size)
    assert max_diff(fused(x), model(x)) < TOL


def every_op_genotype() -> Genotype:
    normal = CellGenotype(blocks=(
        Block((0, 1), ("conv_1x3_3x1", "conv_1x7_7x1")),
        Block((0, 2), ("dil_conv_3x3", "max_pool_5x5"), "concat"),
        Block((1, 3), ("max_pool_7x7", "conv_1x1")),
        Block((2, 4), ("conv_3x3", "sep_conv_7x7")),
        Block((1, 0), ("identity", "avg_pool_3x3")),
    ), concat=(3, 5, 6))
    reduction = CellGenotype(blocks=(
        Block((0, 1), ("identity", "avg_pool_3x3")),
        Block((1, 2), ("max_pool_3x3", "conv_1x1"), "concat"),
        Block((0, 3), ("sep_conv_3x3", "dil_conv_3x3")),
    ), concat=(2, 3, 4))
    return Genotype(normal=normal, reduction=reduction, name="every-op")


@torch.no_grad()
@pytest.mark.parametrize("stem, size", [("imagenet", 65), ("imagenet", 64), ("cifar", 32)])
def test_fused_equals_unfused_for_every_op(stem: str, size: int) -> None:
    model = randomize_batchnorm(build_nasnet(every_op_genotype(), cells_per_stack=1, num_conv_filters=8, stem=stem,
                                             num_classes=10, skip_reduction_layer_input=stem == "imagenet"))
    x = torch.randn(2, 3, size, size)
    fused = optimize_for_inference(model)
    assert max_diff(fused(x), model(x)) < TOL
    assert max_diff(optimize_for_inference(model, channels_last=False)(x), model(x)) < TOL
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())


@torch.no_grad()
def test_fused_features_only_backbone_equals_unfused() -> None:
    backbone = randomize_batchnorm(nasnet_zoo.create_model("nasnet_a_mobile", features_only=True, out_indices=(1, 2, 4)))
    fused = optimize_for_inference(backbone)
    x = torch.randn(1, 3, 128, 160)
    maps, fused_maps = backbone(x), fused(x)
    assert fused.feature_info.reduction() == [4, 8, 32]
    assert [m.shape for m in fused_maps] == [m.shape for m in maps]
    assert all(max_diff(a, b) < TOL for a, b in zip(fused_maps, maps))


def test_original_untouched_and_copy_refuses_training() -> None:
    model = nasnet_zoo.create_model("nasnet_a_cifar").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = optimize_for_inference(model)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="train the original model"):
        fused.train()
    with pytest.raises(TypeError, match="expects a NASNet"):
        optimize_for_inference(torch.nn.Linear(2, 2))


@torch.no_grad()
def test_fold_bn_into_a_slice_of_a_conv_with_bias() -> None:
    conv, bn = torch.nn.Conv2d(3, 4, 3, bias=True), randomize_batchnorm(torch.nn.BatchNorm2d(6))
    x = torch.randn(1, 3, 8, 8)
    expected = bn(torch.cat([torch.zeros(1, 2, 6, 6), conv(x)], dim=1))[:, 2:]
    fold_bn(conv, bn, slice(2, None))
    assert max_diff(conv(x), expected) < 1e-5


def test_optimized_model_mixes_inference_mode_no_grad_and_input_gradients() -> None:
    model = randomize_batchnorm(nasnet_zoo.create_model("nasnet_a_cifar", cells_per_stack=2))
    fused = optimize_for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    for _ in range(2):  # the second round reuses buffers made under the other modes
        with torch.inference_mode():
            assert max_diff(fused(x), expected) < TOL
        with torch.no_grad():
            assert max_diff(fused(x), expected) < TOL
        x_grad = x.clone().requires_grad_()
        logits = fused(x_grad)
        assert max_diff(logits.detach(), expected) < TOL
        logits.sum().backward()  # e.g. saliency maps: gradients reach the input through the fused model
        assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0


@torch.no_grad()
def test_optimized_model_serves_threads_at_once() -> None:
    """The ReLU memo and its reused buffers are per thread: concurrent calls do not see each other's."""
    from concurrent.futures import ThreadPoolExecutor
    model = randomize_batchnorm(nasnet_zoo.create_model("nasnet_a_cifar", cells_per_stack=2))
    fused = optimize_for_inference(model)
    inputs = [torch.randn(2, 3, 32, 32) for _ in range(6)]
    expected = [model(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        outputs = list(pool.map(fused, inputs))
    assert all(max_diff(a, b) < TOL for a, b in zip(outputs, expected))


@torch.no_grad()
def test_fused_detection_trunk_ranges_equal_unfused() -> None:
    """A detector's two halves (the C4 split) fuse as trunk ranges: what a fused detector is built from."""
    from nasnet_zoo.detection import NASNetBoxHead, NASNetRPNBackbone
    model = randomize_batchnorm(nasnet_zoo.create_model("nasnet_a_mobile", num_classes=0, aux_head=False,
                                                        cells_per_stack=1, num_conv_filters=8))
    backbone, head = NASNetRPNBackbone(model), NASNetBoxHead(model)
    x = torch.randn(1, 3, 96, 128)
    crops = torch.randn(3, backbone.out_channels, 14, 14)
    assert max_diff(optimize_for_inference(backbone)(x)["0"], backbone(x)["0"]) < TOL
    assert max_diff(optimize_for_inference(head)(crops), head(crops)) < TOL
