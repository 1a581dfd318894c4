"""TF-exactness, checked against TensorFlow's own outputs (../shared/fixtures/tf-slim).

With the fixture's TF-slim variables our nasnet_a_mobile must reproduce every end point, not only the logits:
a padding mistake moves the cells by up to 3 and the logits by only 0.03. Every op case of the TF "SAME"
fixture must be reproduced by the layer the model uses for it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.convert import convert_state_dict
from nasnet_zoo.convert.files import read_weights_file
from nasnet_zoo.layers import BNConfig, Conv2dSame, FactorizedReduce, Pool2dSame, SepConv

TOL = 1e-5
END_POINTS = (["conv0_bn", "cell_stem_0", "Stem"] + [f"Cell_{i}" for i in range(4)] + ["Reduction_Cell_0"]
              + [f"Cell_{i}" for i in range(4, 8)] + ["Reduction_Cell_1"] + [f"Cell_{i}" for i in range(8, 12)]
              + ["global_pool", "Logits", "Predictions"])
SIZES = (7, 8, 21, 42, 83, 111, 112)
OPS = ("avg_k3_s1", "avg_k3_s2", "max_k3_s1", "max_k3_s2", "dw_k3_s1", "dw_k3_s2", "dw_k5_s1", "dw_k5_s2",
       "dw_k7_s1", "dw_k7_s2", "sep_k5_s2", "conv_k3_s2_valid", "frpath1_s2", "frpath2_s2")


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def tf_model_run(tf_fixtures: Path) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Our end points with the fixture's weights on the fixture's two photos, and TF's."""
    path = tf_fixtures / "nasnet_a_mobile_tf_random.npz"
    variables, source, _ = read_weights_file(path)
    assert source == "tf"
    model = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=1001).eval()
    result = model.load_state_dict(convert_state_dict(variables, source="tf"), strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("aux_head.") for k in result.missing_keys)
    with np.load(path) as data:
        expected = {k.removeprefix("endpoint/"): data[k] for k in data.files if k.startswith("endpoint/")}
        images = nchw(data["input"])
    with torch.no_grad():
        ours = model.end_points(images)
    ours["Predictions"] = ours["Logits"].softmax(dim=1)
    return ours, expected


def test_fixture_end_points_are_all_checked(tf_model_run) -> None:
    _, expected = tf_model_run
    assert set(expected) == set(END_POINTS)


@pytest.mark.parametrize("name", END_POINTS)
def test_end_point_matches_tf_slim(tf_model_run, name: str) -> None:
    ours, expected = tf_model_run
    want = expected[name]
    got = ours[name].numpy()
    if got.ndim == 4:
        got = got.transpose(0, 2, 3, 1)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < TOL


def our_op(op: str, case: dict[str, np.ndarray], stem_conv: torch.nn.Conv2d) -> torch.nn.Module:
    """The layer the model uses for one fixture op, carrying the fixture's kernels."""
    stride = int(op.split("_s")[1][0])
    if op.startswith(("avg", "max")):
        return Pool2dSame(op[:3], 3, stride)
    if op.startswith("dw_"):
        k = int(op[4])
        conv = Conv2dSame(4, 4, k, stride=stride, groups=4)
        conv.weight.data = torch.from_numpy(case["kernel"].transpose(2, 3, 0, 1).copy())
        return conv
    if op == "sep_k5_s2":
        sep = SepConv(4, 4, 5, stride=2)
        sep.depthwise.weight.data = torch.from_numpy(case["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
        sep.pointwise.weight.data = torch.from_numpy(case["pointwise_kernel"].transpose(3, 2, 0, 1).copy())
        return torch.nn.Sequential(sep.depthwise, sep.pointwise)  # SepConv minus its ReLU and BN, as in the fixture
    if op == "conv_k3_s2_valid":
        conv = torch.nn.Conv2d(4, 4, stem_conv.kernel_size, stride=stem_conv.stride, padding=stem_conv.padding,
                               bias=False)
        conv.weight.data = torch.from_numpy(case["kernel"].transpose(3, 2, 0, 1).copy())
        return conv
    # Factorized reduction: identity 1x1 convs (and a fresh BN with eps 0, the identity in eval mode) expose
    # each path of our FactorizedReduce.
    reduce = FactorizedReduce(4, 8, relu_first=False, bn=BNConfig(eps=0.0)).eval()
    eye = torch.eye(4).reshape(4, 4, 1, 1)
    reduce.path1.weight.data, reduce.path2.weight.data = eye.clone(), eye.clone()
    half = slice(0, 4) if op == "frpath1_s2" else slice(4, 8)
    return _Channels(reduce, half)


class _Channels(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, channels: slice) -> None:
        super().__init__()
        self.module, self.channels = module, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)[:, self.channels]


@pytest.fixture(scope="module")
def op_cases(tf_fixtures: Path) -> dict[str, np.ndarray]:
    with np.load(tf_fixtures / "tf_same_ops.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def stem_conv() -> torch.nn.Conv2d:
    return nasnet_zoo.create_model("nasnet_a_mobile", num_classes=0).stem.conv


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
def test_op_matches_tf_same(op_cases, stem_conv, op: str, size: int) -> None:
    prefix = f"{op}_h{size}/"
    case = {k.removeprefix(prefix): v for k, v in op_cases.items() if k.startswith(prefix)}
    with torch.no_grad():
        got = our_op(op, case, stem_conv).eval()(nchw(case["in"])).numpy().transpose(0, 2, 3, 1)
    assert got.shape == case["out"].shape
    assert np.abs(got - case["out"]).max() < TOL


def test_every_op_case_is_covered(op_cases) -> None:
    assert {k.rsplit("/", 1)[0] for k in op_cases} == {f"{op}_h{h}" for op in OPS for h in SIZES}


def tf_end_point_sides(size: int) -> dict[str, int]:
    """TF's formulas: VALID 3x3/2 stem conv, then ceil(n / 2) at each stride-2 SAME cell."""
    sides = {"conv0_bn": (size - 3) // 2 + 1}
    sides["cell_stem_0"] = math.ceil(sides["conv0_bn"] / 2)
    sides["Stem"] = sides["Cell_3"] = math.ceil(sides["cell_stem_0"] / 2)
    sides["Reduction_Cell_0"] = sides["Cell_7"] = math.ceil(sides["Stem"] / 2)
    sides["Reduction_Cell_1"] = sides["Cell_11"] = math.ceil(sides["Reduction_Cell_0"] / 2)
    return sides


@pytest.fixture(scope="module")
def mobile() -> torch.nn.Module:
    return nasnet_zoo.create_model("nasnet_a_mobile", num_classes=10).eval()


@pytest.mark.parametrize("size", [200, 256, 299, 32])
def test_other_input_sizes_follow_tf_formulas(mobile, size: int) -> None:
    with torch.no_grad():
        points = mobile.end_points(torch.randn(1, 3, size, size))
    for name, side in tf_end_point_sides(size).items():
        assert tuple(points[name].shape[-2:]) == (side, side), name
    assert points["Logits"].shape == (1, 10)


@pytest.mark.parametrize("bad, problem", [
    (torch.randn(1, 3, 31, 64), "too small"),
    (torch.randn(3, 224, 224), "rank 3"),
    (torch.randn(1, 1, 224, 224), "1 channels"),
    (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "dtype torch.uint8"),
])
def test_bad_input_names_the_expected_input(mobile, bad: torch.Tensor, problem: str) -> None:
    with pytest.raises(ValueError, match=r"expected a float tensor \[N, 3, H, W\] with H, W >= 32") as err:
        mobile(bad)
    assert problem in str(err.value)
