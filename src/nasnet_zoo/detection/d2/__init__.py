"""detectron2 integration: NASNet backbones, the C4 box head, config keys, weights, training and export.

Importing this package registers ``build_nasnet_fpn_backbone``, ``build_nasnet_c4_backbone`` and
``NASNetROIHeads`` with detectron2. It needs detectron2, which the rest of ``nasnet_zoo`` never imports.
"""
from __future__ import annotations

try:
    import detectron2  # noqa: F401
except ImportError as err:  # raised where detectron2 is missing
    raise ImportError(
        "nasnet_zoo.detection.d2 needs detectron2, which has no wheel for torch 2.x: install torch first, then "
        "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
        "(see docs/detectron2.md)"
    ) from err

from .backbone import (NASNetBackbone, NASNetC4Backbone, NASNetC4Head, build_configured_nasnet,
                       build_nasnet_c4_backbone, build_nasnet_fpn_backbone)
from .config import add_nasnet_config
from .roi_heads import NASNetROIHeads

__all__ = [
    "NASNetBackbone", "NASNetC4Backbone", "NASNetC4Head", "NASNetROIHeads", "add_nasnet_config",
    "build_configured_nasnet", "build_nasnet_c4_backbone", "build_nasnet_fpn_backbone",
]
