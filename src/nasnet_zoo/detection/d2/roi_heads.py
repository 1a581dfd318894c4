"""The C4 design's box head: detectron2's ``Res5ROIHeads`` with the NASNet cells after stride 16 as "res5"."""
from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from ..modeling.backbones import NASNetBoxHead
from .backbone import NASNetC4Head, build_configured_nasnet


@ROI_HEADS_REGISTRY.register()
class NASNetROIHeads(Res5ROIHeads):
    """Pools each proposal from the stride-16 hand-off states and runs the rest of the NASNet on it.

    This is the split of the paper's detection experiments (TF Object Detection API ``faster_rcnn_nas``).
    """

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        if cfg.MODEL.MASK_ON:
            raise ValueError("NASNetROIHeads is a box head only: its second stage ends in global pooling, so "
                             "there is no map for a mask head; set MODEL.MASK_ON False or use the FPN design")
        return super().from_config(cfg, input_shape)

    @classmethod
    def _build_res5_block(cls, cfg: CfgNode) -> tuple[nn.Module, int]:
        head = NASNetC4Head(build_configured_nasnet(cfg, NASNetBoxHead))
        return head, head.out_channels
