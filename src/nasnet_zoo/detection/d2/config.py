"""``MODEL.NASNET.*``: the config keys of the NASNet backbones."""
from __future__ import annotations

from typing import Any

from detectron2.config import CfgNode


def nasnet_overrides(cfg: CfgNode) -> dict[str, Any]:
    """The ``NASNetConfig`` fields that ``MODEL.NASNET`` sets (the torchvision engine's BACKBONE_ARGS)."""
    nas = cfg.MODEL.NASNET
    fields = {"cells_per_stack": nas.CELLS_PER_STACK, "num_conv_filters": nas.NUM_CONV_FILTERS,
              "stem_multiplier": nas.STEM_MULTIPLIER}
    return {k: v for k, v in fields.items() if v}


def add_nasnet_config(cfg: CfgNode) -> None:
    """Add the NASNet backbone keys to a detectron2 config (call before ``merge_from_file``).

    ``MODEL.NASNET.FREEZE_AT`` counts stages as the torchvision engine does (1: stem and stride 4, 2: stride 8,
    3: stride 16, 4: stride 32); ``MODEL.BACKBONE.FREEZE_AT``, which numbers ResNet stages, is not read.
    """
    cfg.MODEL.NASNET = CfgNode()
    # A registered model name, or a genotype JSON (which then takes precedence).
    cfg.MODEL.NASNET.ARCH = "nasnet_a_mobile"
    cfg.MODEL.NASNET.GENOTYPE_FILE = ""
    # NASNetConfig fields; 0 keeps the architecture's own. A genotype file needs the first two
    # (NASNet-A "N @ F" is CELLS_PER_STACK N, NUM_CONV_FILTERS F / 24).
    cfg.MODEL.NASNET.CELLS_PER_STACK = 0
    cfg.MODEL.NASNET.NUM_CONV_FILTERS = 0
    cfg.MODEL.NASNET.STEM_MULTIPLIER = 0.0
    # Maps named by stage: "stage{k}" has stride 2**k (stage2 .. stage5 are strides 4 .. 32).
    cfg.MODEL.NASNET.OUT_FEATURES = ["stage2", "stage3", "stage4", "stage5"]
    cfg.MODEL.NASNET.FREEZE_AT = 1
    cfg.MODEL.NASNET.NORM = "FrozenBN"
