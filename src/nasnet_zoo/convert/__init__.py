"""Foreign NASNet-A weights -> nasnet_zoo state dicts.

Three sources: TF-slim variables (``"tf"``, TF names and layouts), Cadene ``pretrainedmodels``
(``"cadene"``) and timm (``"timm"``), whose tensors are already in PyTorch layout.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from .cadene import convert_cadene
from .tf import convert_tf
from .timm import convert_timm

SOURCES = ("tf", "cadene", "timm")


def convert_state_dict(state_dict: Mapping[str, Any], source: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    """Convert a foreign state dict to ours.

    ``source="tf"`` takes TF-slim variables by name (numpy arrays, keys with or without ``var/``) and accepts
    ``drop_background=True`` to turn the 1001-class head into 1000 classes. ``"cadene"`` and ``"timm"`` take
    the state dict of the corresponding PyTorch port.
    """
    if source == "tf":
        return convert_tf(state_dict, **kwargs)
    if kwargs:
        raise TypeError(f"source={source!r} takes no options, got {sorted(kwargs)}")
    if source == "cadene":
        return convert_cadene(state_dict)
    if source == "timm":
        return convert_timm(state_dict)
    raise ValueError(f"unknown weight source {source!r}; expected one of {SOURCES}")


def guess_source(state_dict: Mapping[str, Any]) -> str:
    """Which layout a state dict is in: ``"ours"``, ``"cadene"`` (also timm's) or ``"tf"``."""
    keys = [k.removeprefix("module.") for k in state_dict]
    if any(k.startswith("cells.") for k in keys):
        return "ours"
    if any(k.startswith(("cell_stem_0.", "conv0.conv.")) for k in keys):
        return "cadene"
    if any("/" in k for k in keys) and all(isinstance(v, np.ndarray) for v in state_dict.values()):
        return "tf"
    raise ValueError(f"cannot tell the layout of this state dict (first keys {keys[:3]}); it is neither "
                     "nasnet_zoo's, Cadene/timm's NASNet-A nor TF-slim variables: pass source= explicitly")


__all__ = ["SOURCES", "convert_cadene", "convert_state_dict", "convert_tf", "convert_timm", "guess_source"]
