"""Bad input to any model entry point (classifier, end_points, features_only backbone, the inference copies)
is a ValueError naming the expected input and the fix, raised before any computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.inference import optimize_for_inference


@pytest.fixture(scope="module")
def entry_points() -> dict[str, object]:
    mobile = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=10).eval()
    return {
        "classifier": mobile,
        "end_points": mobile.end_points,
        "features_only": nasnet_zoo.create_model("nasnet_a_mobile", features_only=True).eval(),
        "optimized": optimize_for_inference(mobile),
    }


BAD_INPUTS = [
    (torch.randn(3, 64, 64), "rank 3 with shape (3, 64, 64); add the batch dimension with x.unsqueeze(0)"),
    (torch.randn(64, 64), "rank 2"),
    (torch.randn(2, 64, 64, 3), "this looks like channels-last [N, H, W, 3] data: use x.permute(0, 3, 1, 2)"),
    (torch.randn(2, 1, 64, 64), "for grayscale images repeat the channel"),
    (torch.randn(2, 4, 64, 64), "got 4 channels (shape (2, 4, 64, 64)); build the model with in_chans=4"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "dtype torch.uint8; convert images to float"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.int64), "dtype torch.int64"),
    (torch.randn(2, 3, 16, 64), "16x64: too small"),
    (np.zeros((2, 3, 64, 64), dtype=np.float32), "got ndarray; convert images with"),
]


@pytest.mark.parametrize("entry", ["classifier", "end_points", "features_only", "optimized"])
@pytest.mark.parametrize("bad, message", BAD_INPUTS, ids=[m.split(";")[0][:24] for _, m in BAD_INPUTS])
def test_bad_input_is_a_value_error_naming_expected_input_and_fix(entry_points, entry: str, bad, message: str) -> None:
    with pytest.raises(ValueError, match=r"expected a float tensor \[N, 3, H, W\] with H, W >= 32") as err:
        entry_points[entry](bad)
    assert message in str(err.value)


@torch.no_grad()
def test_smallest_accepted_size_runs(entry_points) -> None:
    logits = entry_points["classifier"](torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10)


def test_limits_follow_the_config() -> None:
    """A CIFAR stem reduces twice, a one-channel model expects one channel: messages state the real limits."""
    cifar = nasnet_zoo.create_model("nasnet_a_cifar", cells_per_stack=1, in_chans=1).eval()
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\] with H, W >= 4.*resize to at least 4x4"):
        cifar(torch.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match="got 3 channels"):
        cifar(torch.randn(1, 3, 32, 32))
