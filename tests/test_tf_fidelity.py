"""TF-exactness, checked against TensorFlow's own outputs.

The oracle ships in ``tests/fixtures/tf_slim``: TF-slim NASNet-A Mobile run on two COCO photos with random
weights, and TF's "SAME" ops on odd and even sizes. It was compacted from the full fixture
(``../shared/fixtures/tf-slim``) by ``tools/make_tf_fixture.py``: the weights and op inputs are not stored but
redrawn from their documented seeds (checked bit for bit by the tool, and by a sha256 here); the logits are
stored in full and every end point and large op output at a seeded sample of positions that holds the whole
border ring (see ``tests/tf_oracle.py``). Our nasnet_a_mobile must reproduce every end point, not only the
logits: a padding mistake moves the cells by up to 3 and the logits by only 0.03. The tests at the end prove
the compact checks still catch the two classic mistakes, symmetric padding and zero-counting average pools.

When the full fixture is present (``$NASNET_ZOO_TF_FIXTURES``, as CI sets it) every value of it is checked too.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import nasnet_zoo
import tf_oracle
from nasnet_zoo.convert import convert_state_dict
from nasnet_zoo.layers import BNConfig, Conv2dSame, FactorizedReduce, Pool2dSame, SepConv
from nasnet_zoo.layers import padding as padding_module
from tf_oracle import END_POINTS, OPS, SIZES

TOL = 1e-5


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(0, 2, 3, 1) if t.dim() == 4 else t.numpy()


@torch.no_grad()
def mobile_end_points(tf_mobile: tf_oracle.MobileOracle, padding: str = "tf") -> dict[str, np.ndarray]:
    """Our end points (NHWC) with TF-slim's variables on TF-slim's input."""
    model = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=1001, padding=padding).eval()
    result = model.load_state_dict(convert_state_dict(tf_mobile.variables, source="tf"), strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("aux_head.") for k in result.missing_keys)
    points = model.end_points(nchw(tf_mobile.images))
    points["Predictions"] = points["Logits"].softmax(dim=1)
    return {name: nhwc(value) for name, value in points.items()}


def mismatches(ours: dict[str, np.ndarray], expected: dict[str, tf_oracle.Expected]) -> dict[str, float]:
    """End points (in network order) where ours differ from TF's by more than TOL, with the difference."""
    diffs = {name: expected[name].max_diff(ours[name]) for name in END_POINTS}
    return {name: d for name, d in diffs.items() if not d < TOL}


@pytest.fixture(scope="module")
def ours(tf_mobile) -> dict[str, np.ndarray]:
    return mobile_end_points(tf_mobile)


def test_fixture_end_points_are_all_checked(tf_mobile, ours) -> None:
    assert set(tf_mobile.end_points) == set(END_POINTS) <= set(ours)
    assert tf_mobile.logits.shape == (2, 1001) and tf_mobile.end_points["Logits"].index is None  # stored whole
    stem = tf_mobile.end_points["Stem"]
    assert stem.shape == (2, 28, 28, 88) and stem.index is not None
    ring = np.zeros(stem.shape, bool)
    ring.reshape(-1)[stem.index] = True
    assert ring[:, [0, -1], :, :].any(axis=(0, 1, 2)).sum() >= 8  # whole border rows of several channels
    assert ring[:, [0, -1], :, :].any(axis=-1).all() and ring[:, :, [0, -1], :].any(axis=-1).all()


@pytest.mark.parametrize("name", END_POINTS)
def test_end_point_matches_tf_slim(tf_mobile, ours, name: str) -> None:
    assert tf_mobile.end_points[name].max_diff(ours[name]) < TOL


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
def op_cases() -> dict[str, tuple[dict[str, np.ndarray], tf_oracle.Expected]]:
    return tf_oracle.load_op_cases()


@pytest.fixture(scope="module")
def stem_conv() -> torch.nn.Conv2d:
    return nasnet_zoo.create_model("nasnet_a_mobile", num_classes=0).stem.conv


@torch.no_grad()
def op_diff(op: str, case: dict[str, np.ndarray], expected: tf_oracle.Expected, stem_conv) -> float:
    return expected.max_diff(nhwc(our_op(op, case, stem_conv).eval()(nchw(case["in"]))))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
def test_op_matches_tf_same(op_cases, stem_conv, op: str, size: int) -> None:
    case, expected = op_cases[f"{op}_h{size}"]
    assert op_diff(op, case, expected, stem_conv) < TOL


def test_every_op_case_is_covered(op_cases) -> None:
    assert set(op_cases) == {f"{op}_h{h}" for op in OPS for h in SIZES}
    case, expected = op_cases["avg_k3_s1_h112"]
    assert expected.index is not None and case["in"].shape == (2, 112, 112, 4)  # large outputs are sampled
    assert op_cases["avg_k3_s2_h8"][1].index is None                           # small ones are whole


# ---- the compact checks catch the mistakes they exist for -----------------------------------------------

def symmetric_pads(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                   dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """PyTorch-style symmetric padding, (k - 1) / 2 each side: the same output size as SAME, other cells."""
    top, left = ((kernel[0] - 1) * dilation[0]) // 2, ((kernel[1] - 1) * dilation[1]) // 2
    return left, left, top, top


def test_symmetric_padding_fails_the_compact_checks(tf_mobile, op_cases, stem_conv, monkeypatch) -> None:
    monkeypatch.setattr(padding_module, "same_pads_2d", symmetric_pads)
    wrong = mismatches(mobile_end_points(tf_mobile), tf_mobile.end_points)
    # cell_stem_0 pads the odd 111x111 map, where SAME is symmetric; the first even map is in cell_stem_1
    assert list(wrong)[0] == "Stem" and wrong["Stem"] > 0.1, wrong
    assert set(wrong) == set(END_POINTS) - {"conv0_bn", "cell_stem_0"}
    for op in ("avg_k3_s2", "max_k3_s2", "dw_k3_s2", "dw_k5_s2", "dw_k7_s2", "sep_k5_s2"):
        for size in (8, 42, 112):  # even sizes: TF puts the extra cell at the bottom/right
            case, expected = op_cases[f"{op}_h{size}"]
            assert op_diff(op, case, expected, stem_conv) > 0.01, (op, size)


def test_zero_counting_average_pools_fail_the_compact_checks(tf_mobile, op_cases, stem_conv) -> None:
    """timm's behaviour (``padding="timm"``): strided average pools count the padded zeros."""
    wrong = mismatches(mobile_end_points(tf_mobile, padding="timm"), tf_mobile.end_points)
    assert list(wrong)[0] == "cell_stem_0" and wrong["cell_stem_0"] > 0.1, wrong
    assert set(wrong) == set(END_POINTS) - {"conv0_bn"}
    for size in SIZES:
        case, expected = op_cases[f"avg_k3_s2_h{size}"]
        with torch.no_grad():
            got = nhwc(Pool2dSame("avg", 3, 2, mode="timm")(nchw(case["in"])))
        assert expected.max_diff(got) > 0.1, size


# ---- the full fixture, where present (CI) ---------------------------------------------------------------

def test_full_fixture_end_points(tf_fixtures: Path, ours) -> None:
    with np.load(tf_fixtures / "nasnet_a_mobile_tf_random.npz") as data:
        for name in END_POINTS:
            tf_value = data["logits"] if name == "Logits" else data[f"endpoint/{name}"]
            assert ours[name].shape == tf_value.shape, name
            assert np.abs(ours[name] - tf_value).max() < TOL, name


def test_full_fixture_op_cases(tf_fixtures: Path, stem_conv) -> None:
    with np.load(tf_fixtures / "tf_same_ops.npz") as data:
        for op in OPS:
            for size in SIZES:
                prefix = f"{op}_h{size}/"
                case = {k.removeprefix(prefix): data[k] for k in data.files if k.startswith(prefix)}
                expected = tf_oracle.Expected(case["out"].shape, case["out"])
                assert op_diff(op, case, expected, stem_conv) < TOL, (op, size)


def test_compact_fixture_equals_the_full_one(tf_fixtures: Path, tmp_path: Path) -> None:
    """The rebuild tool checks the redrawn weights, photos and op inputs bit for bit and every stored value;
    rebuilt here, it gives the shipped files byte for byte."""
    import importlib.util
    tool = Path(__file__).resolve().parents[1] / "tools" / "make_tf_fixture.py"
    spec = importlib.util.spec_from_file_location("make_tf_fixture", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tf_fixtures, tmp_path)
    for name in (tf_oracle.MODEL_FILE, tf_oracle.OPS_FILE, tf_oracle.VARIABLES_FILE):
        assert (tmp_path / name).read_bytes() == (tf_oracle.FIXTURE_DIR / name).read_bytes(), name
    with np.load(tf_fixtures / "nasnet_a_mobile_tf_random.npz") as data:
        variables = tf_oracle.load_mobile().variables
        assert list(variables) == [k for k in data.files if k.startswith("var/")]
        assert all(np.array_equal(v, data[k]) for k, v in variables.items())


def test_compact_fixture_fits_its_budget() -> None:
    files = [p for p in tf_oracle.FIXTURE_DIR.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {tf_oracle.MODEL_FILE, tf_oracle.OPS_FILE, tf_oracle.VARIABLES_FILE}
    assert sum(p.stat().st_size for p in files) <= 3 * 1024 * 1024


# ---- shapes at other sizes and bad input ------------------------------------------------------------------

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
