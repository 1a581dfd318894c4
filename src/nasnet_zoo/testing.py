"""Helpers for equivalence checks in tests and benchmarks."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine weights and running statistics, and switch to eval mode.

    Freshly built BNs are identities (mean 0, var 1, weight 1, bias 0), which hide weight-mapping and BN-folding
    mistakes; random values make them show in the outputs.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0.0, 0.1, generator=g)
            m.running_mean.normal_(0.0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute elementwise difference, as a float.

    The shapes must be equal: broadcasting would compare a [N, C] output with a [C] one (or an empty one)
    and report a small difference for outputs that do not correspond.
    """
    if a.shape != b.shape:
        raise ValueError(f"max_diff needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    return (a - b).abs().max().item()
