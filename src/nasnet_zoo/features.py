"""Multi-scale feature maps from a NASNet, for detection and segmentation backbones."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .nasnet import NASNet


class FeatureInfo(list):
    """One dict per returned map: ``num_chs``, ``reduction`` (stride) and ``module``; timm-style accessors."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


class NASNetFeatures(nn.Module):
    """Runs a NASNet up to its deepest requested level and returns the last map of each stride.

    The classifier, aux head and every cell after the deepest level are dropped, so they cost nothing.
    """

    def __init__(self, model: NASNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        levels = model.feature_levels()
        if out_indices is None:
            out_indices = tuple(range(len(levels)))
        out_indices = tuple(i if i >= 0 else len(levels) + i for i in out_indices)
        bad = [i for i in out_indices if not 0 <= i < len(levels)]
        if bad:
            strides = [lvl["reduction"] for lvl in levels]
            raise ValueError(f"out_indices {bad} out of range: this model has {len(levels)} levels at strides {strides}")
        self.out_indices = out_indices
        self.feature_info = FeatureInfo(levels[i] for i in out_indices)
        self.genotype, self.config, self.pretrained_cfg = model.genotype, model.config, model.pretrained_cfg
        self._plans = model._plans
        wanted = {levels[i]["module"] for i in out_indices}
        last = max(i for i, p in enumerate(self._plans) if f"cells.{p.name}" in wanted) if wanted - {"stem"} else -1
        self._plans = self._plans[: last + 1]
        self._return = [lvl["module"] for lvl in self.feature_info]
        self.stem = model.stem
        self.cells = nn.ModuleDict((p.name, model.cells[p.name]) for p in self._plans)
        self._check_input = model.check_input

    @property
    def out_channels(self) -> list[int]:
        return self.feature_info.channels()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check_input(x)
        outputs: list[torch.Tensor | None] = [None, self.stem(x)]
        named: dict[str, Any] = {"stem": outputs[1]}
        for plan in self._plans:
            outputs.append(self.cells[plan.name](outputs[plan.x], outputs[plan.prev] if plan.prev is not None else None))
            named[f"cells.{plan.name}"] = outputs[-1]
        return [named[m] for m in self._return]
