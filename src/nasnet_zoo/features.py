"""Multi-scale feature maps from a NASNet, for detection and segmentation backbones."""
from __future__ import annotations

from typing import Sequence

import torch

from .nasnet import CellRange, NASNetTrunk


class FeatureInfo(list):
    """One dict per returned map: ``num_chs``, ``reduction`` (stride), ``module`` and the trunk output
    ``index``; timm-style accessors."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


class NASNetFeatures(CellRange):
    """The trunk up to its deepest requested level; returns the last map of each requested stride.

    Only the stem and the cells up to that level are kept: the classifier, the aux head and every later cell
    are not referenced, so they cost nothing once the classifier is gone.
    """

    def __init__(self, model: NASNetTrunk, out_indices: Sequence[int] | None = None) -> None:
        levels = model.feature_levels()
        if out_indices is None:
            out_indices = tuple(range(len(levels)))
        out_indices = tuple(i if i >= 0 else len(levels) + i for i in out_indices)
        bad = [i for i in out_indices if not 0 <= i < len(levels)]
        if bad:
            strides = [lvl["reduction"] for lvl in levels]
            raise ValueError(f"out_indices {bad} out of range: this model has {len(levels)} levels at strides {strides}")
        info = FeatureInfo(levels[i] for i in out_indices)
        super().__init__(model, 0, max(f["index"] for f in info) + 1)
        self.out_indices, self.feature_info = out_indices, info
        self._take = [f["index"] for f in info]

    @property
    def out_channels(self) -> list[int]:
        return self.feature_info.channels()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_intermediates(x, self._take, intermediates_only=True)  # type: ignore[return-value]
