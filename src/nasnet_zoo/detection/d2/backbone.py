"""NASNet backbones in detectron2's ``BACKBONE_REGISTRY``: an FPN design and the paper's C4-style split.

The NASNet parts are the torchvision engine's modules (``NASNetFeatures``, ``NASNetRPNBackbone``,
``NASNetBoxHead``) unchanged; this module only gives them detectron2's names, shapes and config. detectron2
builds the C4 backbone and the ROI heads separately from the config: each allocates only its own cells
(``build_part``), not a NASNet of its own.
"""
from __future__ import annotations

from typing import Callable

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from torch import nn

from nasnet_zoo import Genotype, NASNetFeatures, create_model
from nasnet_zoo.nasnet import NASNetTrunk

from ..modeling.backbones import NASNetBoxHead, NASNetRPNBackbone, build_part
from ..modeling.freeze import freeze_stages, stage_name
from ..modeling.norms import NORMS, convert_norm
from .config import nasnet_overrides

SIZE_DIVISIBILITY = 32
#: The norms of ``MODEL.NASNET.NORM``: the torchvision engine's, less GN (the torchvision engine only).
D2_NORMS = tuple(n for n in NORMS if n != "GN")


def build_configured_nasnet(cfg: CfgNode, part: Callable[[NASNetTrunk], NASNetTrunk] | None = None) -> NASNetTrunk:
    """The headless NASNet of ``MODEL.NASNET``, or only ``part`` of it (``NASNetRPNBackbone``, ``NASNetBoxHead``),
    with its norm set and the first FREEZE_AT stages frozen.

    Only the part's own modules are allocated (``build_part``). Frozen stages also get frozen BN statistics, so
    that "BN" and "SyncBN" only update the trained stages (``convert_norm``, as in the torchvision engine).
    """
    nas = cfg.MODEL.NASNET
    norm = nas.NORM
    if norm not in D2_NORMS:
        raise ValueError(f"MODEL.NASNET.NORM={norm!r} is not supported; use one of {D2_NORMS}")
    # Headless, and drop path off: detectron2's training loop never schedules it.
    settings = dict(num_classes=0, aux_head=False, drop_path_keep_prob=1.0, **nasnet_overrides(cfg))
    if nas.GENOTYPE_FILE and not (nas.CELLS_PER_STACK and nas.NUM_CONV_FILTERS):
        raise ValueError("MODEL.NASNET.GENOTYPE_FILE needs MODEL.NASNET.CELLS_PER_STACK and NUM_CONV_FILTERS")
    arch = Genotype.load(nas.GENOTYPE_FILE) if nas.GENOTYPE_FILE else nas.ARCH
    model = build_part(lambda: create_model(arch, **settings), part or (lambda whole: whole))  # type: ignore[arg-type]
    freeze_stages(model, nas.FREEZE_AT, key="MODEL.NASNET.FREEZE_AT")
    return convert_norm(model, norm)  # type: ignore[return-value]


class NASNetBackbone(Backbone):
    """NASNet maps at the ``MODEL.NASNET.OUT_FEATURES`` strides: FPN's bottom-up path."""

    def __init__(self, model: NASNetTrunk, out_features: list[str]) -> None:
        super().__init__()
        names = [stage_name(level["reduction"]) for level in model.feature_levels()]
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(f"MODEL.NASNET.OUT_FEATURES={out_features}: unknown {unknown or 'empty list'}; "
                             f"this NASNet offers {names}")
        self.body = NASNetFeatures(model, sorted(names.index(f) for f in out_features))
        info = self.body.feature_info
        self._out_features = [stage_name(s) for s in info.reduction()]
        self._out_feature_channels = dict(zip(self._out_features, info.channels()))
        self._out_feature_strides = dict(zip(self._out_features, info.reduction()))

    @property
    def size_divisibility(self) -> int:
        return SIZE_DIVISIBILITY

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._out_features, self.body(x)))


class NASNetC4Backbone(Backbone):
    """The paper's first stage: the cells up to stride 16; outputs the last two stride-16 cells concatenated."""

    def __init__(self, model: NASNetTrunk) -> None:
        super().__init__()
        self.trunk = NASNetRPNBackbone(model)
        name = stage_name(self.trunk.stride)
        self._out_features = [name]
        self._out_feature_channels = {name: self.trunk.out_channels}
        self._out_feature_strides = {name: self.trunk.stride}

    @property
    def size_divisibility(self) -> int:
        return SIZE_DIVISIBILITY

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self._out_features[0]: self.trunk(x)["0"]}


class NASNetC4Head(nn.Module):
    """The paper's second stage as ``Res5ROIHeads``' "res5": returns pooled features as [N, C, 1, 1] maps,
    which ``Res5ROIHeads`` mean-pools again (a no-op) before the box predictor."""

    def __init__(self, model: NASNetTrunk) -> None:
        super().__init__()
        self.head = NASNetBoxHead(model)
        self.out_channels: int = self.head.out_channels

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(crops)[:, :, None, None]


@BACKBONE_REGISTRY.register()
def build_nasnet_c4_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """``MODEL.BACKBONE.NAME: build_nasnet_c4_backbone``; pair with ``MODEL.ROI_HEADS.NAME: NASNetROIHeads``."""
    _check_channels(input_shape)
    return NASNetC4Backbone(build_configured_nasnet(cfg, NASNetRPNBackbone))


@BACKBONE_REGISTRY.register()
def build_nasnet_fpn_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> Backbone:
    """``MODEL.BACKBONE.NAME: build_nasnet_fpn_backbone``: detectron2's FPN over NASNet maps, plus a pooled P6."""
    _check_channels(input_shape)
    bottom_up = NASNetBackbone(build_configured_nasnet(cfg), list(cfg.MODEL.NASNET.OUT_FEATURES))
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


def _check_channels(input_shape: ShapeSpec) -> None:
    if input_shape.channels != 3:
        raise ValueError(f"NASNet backbones take RGB images; MODEL.PIXEL_MEAN gives {input_shape.channels} "
                         "channels (give three values)")
