"""timm ``nasnetalarge`` state dicts -> ours.

timm kept Cadene's module names, so the mapping is Cadene's. What differs is the computation: timm's
"same"-padded stride-2 average pools count the zero padding, so its weights reproduce timm's outputs only in
our ``padding="timm"`` mode (``create_model("nasnet_a_large", padding="timm")``).
"""
from __future__ import annotations

from typing import Mapping

import torch

from .cadene import convert_cadene

PADDING_MODE = "timm"


def convert_timm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a timm NASNet-A state dict to ours (build the model with ``padding="timm"`` to match timm)."""
    return convert_cadene(state_dict)
