"""NASNet backbones for torchvision's Faster R-CNN: the FPN design and the paper's C4 split.

Each NASNet part is a range of the classifier's trunk (``NASNetTrunk.cell_range``): it holds the stem and cells
it runs and nothing else, and runs them with the trunk's own loop. Each backbone describes its outputs with
``output_shape()`` (name -> channels, stride) so that wrappers for other frameworks (detectron2) can reuse
these modules unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from nasnet_zoo.features import NASNetFeatures
from nasnet_zoo.nasnet import CellRange, NASNetTrunk

Part = TypeVar("Part", bound=nn.Module)


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one output map."""

    channels: int
    stride: int


class NASNetFPNBackbone(nn.Module):
    """NASNet maps at strides 4/8/16/32 -> FPN (+ a max-pooled P6): design (a)."""

    def __init__(self, model: NASNetTrunk, out_channels: int = 256, out_indices: Sequence[int] = (1, 2, 3, 4),
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


def c4_split(model: NASNetTrunk) -> int:
    """Trunk output number of the last reduction cell: the paper's second stage starts there."""
    info = [i for i in model.output_info(whole_network=True) if i["reduction"]]
    if len(info) < 3 or not info[-1]["name"].startswith("reduction_cell"):
        raise ValueError("the paper's Faster R-CNN split needs an ImageNet-stem NASNet with two reduction cells")
    return info[-1]["index"]


class NASNetRPNBackbone(CellRange):
    """Stem and cells up to stride 16; returns the concatenation of the last two stride-16 cell outputs.

    This is the RPN input of the paper's design (TF Object Detection API ``faster_rcnn_nas``); the same crops
    feed :class:`NASNetBoxHead`, which splits them back into the two cell outputs.
    """

    def __init__(self, model: NASNetTrunk) -> None:
        super().__init__(model, 0, c4_split(model))
        last_two = self.output_info()[-2:]
        self.stride = last_two[-1]["stride"]
        self.split_channels = tuple(i["channels"] for i in last_two)
        self.out_channels = sum(self.split_channels)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"0": ShapeSpec(self.out_channels, self.stride)}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":  # type: ignore[override]
        last_two = self.forward_intermediates(x, 2, intermediates_only=True)
        return OrderedDict([("0", torch.cat(last_two, dim=1))])  # type: ignore[arg-type]


class PendingCrops:
    """RoI crops not pooled yet: what :class:`DeferredRoIAlign` hands the box head out of training.

    ``chunks(n)`` pools and yields them ``n`` boxes at a time, image by image in torchvision's order, so that
    only one chunk of crops exists at a time (a Large crop at 14 x 14 is 3 MB: 1,000 of them are 3 GB).
    """

    def __init__(self, pool: Callable[..., torch.Tensor], features: dict[str, torch.Tensor],
                 boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> None:
        self.pool, self.features, self.boxes, self.image_shapes = pool, features, boxes, image_shapes

    def __len__(self) -> int:
        return sum(len(b) for b in self.boxes)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        if len(self) == 0:  # no proposals: one empty batch of crops, with the right shape
            yield self.pool(self.features, self.boxes, self.image_shapes)
            return
        for image, boxes in enumerate(self.boxes):
            for part in boxes.split(size):
                only_this = [part if i == image else b[:0] for i, b in enumerate(self.boxes)]
                yield self.pool(self.features, only_this, self.image_shapes)


class DeferredRoIAlign(MultiScaleRoIAlign):
    """torchvision's RoIAlign that, out of training and tracing, defers the pooling to the box head
    (:class:`PendingCrops`), which pools one chunk at a time; in training and traced exports it pools at once."""

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],  # type: ignore[override]
                image_shapes: list[tuple[int, int]]) -> "torch.Tensor | PendingCrops":
        if self.training or torch.jit.is_tracing():
            return super().forward(x, boxes, image_shapes)
        return PendingCrops(super().forward, x, boxes, image_shapes)


class NASNetBoxHead(CellRange):
    """The last reduction cell and the last stack, run on every RoI crop: the paper's second stage.

    Out of training the crops are pooled and run ``chunk`` at a time (from :class:`PendingCrops`, or split
    from a pooled tensor), so memory stays bounded by the chunk whatever the proposal count; in training they
    run together, as BatchNorm statistics and the backward pass need, and in traced exports, whose proposal
    count is dynamic.
    """

    def __init__(self, model: NASNetTrunk, chunk: int = 64) -> None:
        split = c4_split(model)
        super().__init__(model, split)
        if self.seeds != (split - 2, split - 1):
            raise ValueError("the second stage reads cells other than the last two stride-16 cells; "
                             "this genotype/config cannot be split as in the paper")
        if chunk < 1:
            raise ValueError(f"box_head_chunk must be at least 1 crop, got {chunk}")
        self.split_channels = self.seed_channels
        self.out_channels = self.output_info()[-1]["channels"]
        self.chunk = chunk

    def forward(self, crops: "torch.Tensor | PendingCrops") -> torch.Tensor:  # type: ignore[override]
        if isinstance(crops, PendingCrops):
            parts: Iterable[torch.Tensor] = crops.chunks(self.chunk)
        elif self.training or torch.jit.is_tracing():  # traced graphs: any proposal count
            return self._pooled(crops)
        else:  # crops pooled by another framework (detectron2's ROI heads)
            parts = crops.split(self.chunk)
        return torch.cat([self._pooled(part) for part in parts])

    def _pooled(self, crops: torch.Tensor) -> torch.Tensor:
        last = self.forward_features(torch.split(crops, list(self.split_channels), dim=1))
        return torch.relu(last).mean((2, 3))


def build_part(make_model: Callable[[], NASNetTrunk], part: Callable[[NASNetTrunk], Part]) -> Part:
    """``part(make_model())`` without allocating the rest of the network.

    The network is laid out on the meta device (no memory, no initialisation work); only the modules the part
    keeps are then allocated and initialised, by their own ``reset_parameters`` as their constructors do. This
    is for frameworks that build a detector's two halves separately (detectron2 builds the backbone and the
    ROI heads from the config alone), so that each allocates only its own cells.
    """
    with torch.device("meta"):
        module = part(make_model())
    module.to_empty(device="cpu")
    for child in module.modules():
        holds = any(True for _ in child.parameters(recurse=False)) or any(True for _ in child.buffers(recurse=False))
        if holds:
            if not hasattr(child, "reset_parameters"):
                raise TypeError(f"{type(child).__name__} has tensors but no reset_parameters(): it cannot be "
                                "initialised after a meta-device build")
            child.reset_parameters()
    return module


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
