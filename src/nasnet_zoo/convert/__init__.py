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


EXPECTED = {
    "tf": "TF-slim NASNet-A variables by name as numpy arrays (e.g. 'cell_0/1x1/weights', with or without 'var/')",
    "cadene": "the state dict of Cadene pretrainedmodels' nasnetamobile / nasnetalarge (keys like 'conv0.conv.weight', "
              "'cell_stem_0.conv_1x1.conv.weight', 'cell_0.comb_iter_0_left.separable_1.depthwise_conv2d.weight', "
              "'last_linear.weight')",
    "timm": "the state dict of timm's nasnetalarge (Cadene's key names: 'conv0.conv.weight', 'cell_stem_0....', "
            "'last_linear.weight')",
}


def convert_state_dict(state_dict: Mapping[str, Any], source: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    """Convert a foreign state dict to ours.

    ``source="tf"`` takes TF-slim variables by name (numpy arrays, keys with or without ``var/``) and accepts
    ``drop_background=True`` to turn the 1001-class head into 1000 classes. ``"cadene"`` and ``"timm"`` take
    the state dict of the corresponding PyTorch port. The result has no auxiliary head (the ports have none):
    load it with ``nasnet_zoo.hub.load_state_dict(model, state_dict)``, which converts and fits it the way
    ``pretrained=`` does, or into a model built with ``aux_head=False``.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown weight source {source!r}; expected one of {SOURCES}")
    if source != "tf" and kwargs:
        raise TypeError(f"source={source!r} takes no options, got {sorted(kwargs)}")
    if not state_dict:
        raise ValueError(f"convert_state_dict(source={source!r}) got an empty state dict; expected {EXPECTED[source]}")
    if any(str(k).removeprefix("module.").startswith("cells.") for k in state_dict):
        raise ValueError(f"this state dict is already in nasnet_zoo's layout (keys 'cells.…'), not {source!r}'s: load "
                         "it as it is (model.load_state_dict, or nasnet_zoo.hub.load_state_dict)")
    converters = {"tf": convert_tf, "cadene": convert_cadene, "timm": convert_timm}
    try:
        return converters[source](state_dict, **kwargs)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} convert_state_dict(source={source!r}) expects {EXPECTED[source]}") from None


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


__all__ = ["EXPECTED", "SOURCES", "convert_cadene", "convert_state_dict", "convert_tf", "convert_timm", "guess_source"]
