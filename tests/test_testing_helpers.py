"""The equivalence helpers other tests and the benches trust (nasnet_zoo.testing)."""
from __future__ import annotations

import pytest
import torch

from nasnet_zoo.testing import max_diff, randomize_batchnorm


def test_max_diff_compares_equal_shapes_only() -> None:
    a = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert max_diff(a, a + torch.tensor([[0.0, 0.5], [-0.25, 0.0]])) == 0.5
    with pytest.raises(ValueError, match=r"equal shapes, got \(2, 2\) and \(2,\)"):
        max_diff(a, a[0])  # would broadcast: row 0 against both rows
    with pytest.raises(ValueError, match="equal shapes"):
        max_diff(a, torch.zeros(0, 2))
    assert max_diff(torch.zeros(0, 4), torch.zeros(0, 4)) == 0.0  # two empty outputs agree


def test_randomize_batchnorm_moves_every_statistic() -> None:
    bn = randomize_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(8)))[0]
    assert not bn.training
    for name, identity in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
        assert not torch.allclose(getattr(bn, name), torch.full((8,), identity)), name
