"""``MODEL.NASNET.*``: the config keys of the NASNet backbones."""
from __future__ import annotations

from detectron2.config import CfgNode


NORMS = ("FrozenBN", "BN", "SyncBN")


def add_nasnet_config(cfg: CfgNode) -> None:
    """Add the NASNet backbone keys to a detectron2 config (call before ``merge_from_file``).

    ``MODEL.NASNET.FREEZE_AT`` counts stages as the torchvision engine does (1: stem and stride 4, 2: stride 8,
    3: stride 16, 4: stride 32); ``MODEL.BACKBONE.FREEZE_AT``, which numbers ResNet stages, is not read.
    """
    cfg.MODEL.NASNET = CfgNode()
    # A registered model name, or a genotype JSON (which then takes precedence) with its "N @ F" size.
    cfg.MODEL.NASNET.ARCH = "nasnet_a_mobile"
    cfg.MODEL.NASNET.GENOTYPE_FILE = ""
    cfg.MODEL.NASNET.CELLS_PER_STACK = 4
    cfg.MODEL.NASNET.FILTERS = 1056
    # Maps named by stage: "stage{k}" has stride 2**k (stage2 .. stage5 are strides 4 .. 32).
    cfg.MODEL.NASNET.OUT_FEATURES = ["stage2", "stage3", "stage4", "stage5"]
    cfg.MODEL.NASNET.FREEZE_AT = 1
    cfg.MODEL.NASNET.NORM = "FrozenBN"
