"""NASNet backbones for torchvision's Faster R-CNN: the FPN design and the paper's two-stage split.

Each backbone describes its outputs with ``output_shape()`` (name -> channels, stride) so that wrappers for
other frameworks (detectron2) can reuse these modules unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from nasnet_zoo.features import NASNetFeatures
from nasnet_zoo.nasnet import NASNet


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one output map."""

    channels: int
    stride: int


class NASNetFPNBackbone(nn.Module):
    """NASNet maps at strides 4/8/16/32 -> FPN (+ a max-pooled P6): design (a)."""

    def __init__(self, model: NASNet, out_channels: int = 256, out_indices: Sequence[int] = (1, 2, 3, 4),
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        self.body = NASNetFeatures(model, out_indices)
        strides = self.body.feature_info.reduction()
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"FPN needs strides that double level to level; out_indices {tuple(out_indices)} "
                             f"give strides {strides}")
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), out_channels,
                                         extra_blocks=LastLevelMaxPool(), norm_layer=norm_layer)
        self.out_channels = out_channels
        self._names = [str(i) for i in range(len(strides))]
        self._strides = strides

    def output_shape(self) -> dict[str, ShapeSpec]:
        shapes = {n: ShapeSpec(self.out_channels, s) for n, s in zip(self._names, self._strides)}
        shapes["pool"] = ShapeSpec(self.out_channels, 2 * self._strides[-1])
        return shapes

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict(zip(self._names, self.body(x))))


def _split_index(model: NASNet) -> int:
    """Index (in cell order) of the last reduction cell: the second stage starts there."""
    names = model.cell_names
    reductions = [i for i, info in enumerate(model.cell_info()) if info["reduction"]]
    if len(reductions) < 3 or not names[reductions[-1]].startswith("reduction_cell"):
        raise ValueError("the paper's Faster R-CNN split needs an ImageNet-stem NASNet with two reduction cells")
    return reductions[-1]


class NASNetRPNBackbone(nn.Module):
    """Stem and cells up to stride 16; returns the concatenation of the last two stride-16 cell outputs.

    This is the RPN input of the paper's design (TF Object Detection API ``faster_rcnn_nas``); the same crops
    feed :class:`NASNetBoxHead`, which splits them back into the two cell outputs.
    """

    def __init__(self, model: NASNet) -> None:
        super().__init__()
        split = _split_index(model)
        plans = model._plans
        self._plans = plans[:split]
        self.stem = model.stem
        self.cells = nn.ModuleDict((p.name, model.cells[p.name]) for p in self._plans)
        info = model.cell_info()
        self.stride = info[split - 1]["stride"]
        self.split_channels = (info[split - 2]["channels"], info[split - 1]["channels"])
        self.out_channels = sum(self.split_channels)
        self._check_input = model.check_input

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"0": ShapeSpec(self.out_channels, self.stride)}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        self._check_input(x)
        outputs: list[torch.Tensor | None] = [None, self.stem(x)]
        for plan in self._plans:
            outputs.append(self.cells[plan.name](outputs[plan.x], outputs[plan.prev] if plan.prev is not None else None))
        return OrderedDict([("0", torch.cat([outputs[-2], outputs[-1]], dim=1))])  # type: ignore[list-item]


class NASNetBoxHead(nn.Module):
    """The last reduction cell and the last stack, run on every RoI crop: the paper's second stage."""

    def __init__(self, model: NASNet) -> None:
        super().__init__()
        split = _split_index(model)
        plans = model._plans
        self._plans = plans[split:]
        self._offset = split + 2  # outputs-list index of the first cell of this head
        seeds = {i for p in self._plans for i in (p.x, p.prev) if i is not None and i < self._offset}
        if not seeds <= {self._offset - 2, self._offset - 1}:
            raise ValueError("the second stage reads cells other than the last two stride-16 cells; "
                             "this genotype/config cannot be split as in the paper")
        self.cells = nn.ModuleDict((p.name, model.cells[p.name]) for p in self._plans)
        info = model.cell_info()
        self.split_channels = (info[split - 2]["channels"], info[split - 1]["channels"])
        self.out_channels = info[-1]["channels"]

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        prev, x = torch.split(crops, list(self.split_channels), dim=1)
        outputs: dict[int, torch.Tensor] = {self._offset - 2: prev, self._offset - 1: x}
        for i, plan in enumerate(self._plans):
            outputs[self._offset + i] = self.cells[plan.name](
                outputs[plan.x], outputs[plan.prev] if plan.prev is not None else None)
        last = outputs[self._offset + len(self._plans) - 1]
        return torch.relu(last).mean((2, 3))


class ConvRPNHead(nn.Module):
    """RPN head with a chosen width for its 3x3 conv (TF's ``first_stage_box_predictor_conv_depth``).

    torchvision's ``RPNHead`` keeps the input width, which for concatenated NASNet cells (up to 4032
    channels) would cost more than the backbone.
    """

    def __init__(self, in_channels: int, num_anchors: int, conv_channels: int = 512) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, conv_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.cls_logits = nn.Conv2d(conv_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(conv_channels, 4 * num_anchors, 1)
        for layer in (self.conv[0], self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        hidden = [self.conv(f) for f in features]
        return [self.cls_logits(h) for h in hidden], [self.bbox_pred(h) for h in hidden]
