"""ScheduledDropPath with TF-slim's default ("v3") semantics.

keep(cell c of T, progress p) = 1 - (c + 1) / T * min(p, 1) * (1 - keep0): deeper cells drop more, and the
rate ramps up linearly over training. A training loop only sets the progress (step / total steps).
"""
from __future__ import annotations

import torch
from torch import nn


class ScheduledDropPath(nn.Module):
    """Drops a whole op output per example and rescales survivors; identity in eval mode."""

    def __init__(self, keep_prob: float = 1.0, cell_ratio: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"drop_path_keep_prob must be in (0, 1], got {keep_prob}")
        self.keep_prob = keep_prob
        self.cell_ratio = cell_ratio
        self.progress = 0.0

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}, cell_ratio={self.cell_ratio:.3f}"

    @property
    def current_keep_prob(self) -> float:
        return 1.0 - self.cell_ratio * min(max(self.progress, 0.0), 1.0) * (1.0 - self.keep_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self.current_keep_prob
        if not self.training or keep >= 1.0:
            return x
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


def set_drop_path_progress(model: nn.Module, progress: float) -> None:
    """Set training progress in [0, 1] on every ScheduledDropPath inside ``model`` (works through DDP too)."""
    for module in model.modules():
        if isinstance(module, ScheduledDropPath):
            module.progress = float(progress)
