"""Fit a converted state dict to a model: the classifier adapted, one wording for what does not fit, and a
guess of which registered architecture foreign weights belong to.

``load_fitted`` is the one entry point: ``pretrained=``, :func:`nasnet_zoo.hub.load_state_dict` and
``tools/convert_weights.py`` all go through it, so a foreign file and a foreign in-memory state dict are
handled alike (background class dropped for 1000 classes, a missing auxiliary head tolerated). The check
itself is :func:`nasnet_zoo.utils.checkpoint.fit_state_dict`, the one every loader of the package uses.
"""
from __future__ import annotations

import functools
import logging
import warnings
from typing import Mapping

import torch
from torch import nn

from ..models.nasnet_a import CONFIGS, build_from_config
from ..nasnet import NASNetConfig
from ..utils.checkpoint import fit_state_dict

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("aux_head.", "classifier.")
_CLASS_KEYS = ("classifier.weight", "classifier.bias", "aux_head.fc.weight", "aux_head.fc.bias")


def load_fitted(model: nn.Module, state: Mapping[str, torch.Tensor], *, origin: str,
                model_name: str) -> dict[str, torch.Tensor]:
    """Adapt the classifier, check that everything else fits ``model`` and load it; return what was loaded.

    Heads may be absent on either side: a checkpoint without an auxiliary head leaves the model's at its random
    init (it only matters in training), and an auxiliary head sized for another input size is not loaded.
    """
    adapted, dropped_classes = adapt_classifier(state, model)
    fitted = fit_state_dict(model, adapted, source=origin, target=model_name, optional=HEAD_PREFIXES,
                            hint=lambda: identify(state, model_name))
    if dropped_classes:
        warnings.warn(f"{origin} has a {dropped_classes}-class classifier and the model {model.config.num_classes} "
                      "classes: the classifier is left randomly initialised (train it before use)", stacklevel=4)
    if set(adapted) - set(fitted):
        log.info("%s: heads of another shape not loaded (%s)", origin, sorted(set(adapted) - set(fitted))[:2])
    if getattr(model, "aux_head", None) is not None and not any(k.startswith("aux_head.") for k in state):
        log.info("%s carries no auxiliary head; it keeps its random init (it only matters in training)", origin)
    model.load_state_dict(fitted, strict=False)
    return fitted


def adapt_classifier(state: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], int]:
    """A 1001-class TF head loses class 0 (the background) for a 1000-class model; any other class-count mismatch
    drops the classifier (it stays randomly initialised, ready for fine-tuning), as timm does. Returns the state
    and the class count of a classifier dropped for a model that has one (0 when none was)."""
    state = dict(state)
    if "classifier.weight" not in state:
        return state, 0
    have, want = int(state["classifier.weight"].shape[0]), int(model.config.num_classes)
    if have == 1001 and want == 1000:
        for key in _CLASS_KEYS:
            if key in state and state[key].shape[0] == 1001:
                state[key] = state[key][1:].clone()
    elif have != want:
        for key in _CLASS_KEYS:
            state.pop(key, None)
        return state, have if want > 0 else 0
    return state, 0


# ---- which architecture is this? -------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _trunk_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a registered config's trunk (no heads), built on the meta device: no memory, no init."""
    with torch.device("meta"):
        model = build_from_config(name, aux_head=False, num_classes=0)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _layout(state: Mapping[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """(stem kind, stem width, normal cells) of a state dict in our layout, or None if it has no stem."""
    stem = state.get("stem.conv.weight")
    if stem is None:
        return None
    kind = "imagenet" if any(k.startswith("cells.cell_stem_") for k in state) else "cifar"
    normal = {k.split(".")[1] for k in state if k.startswith("cells.cell_") and not k.startswith("cells.cell_stem")}
    return kind, int(stem.shape[0]), len(normal)


def _config_layout(name: str) -> tuple[str, int, int]:
    config = NASNetConfig(**CONFIGS[name]["arch"])
    return config.stem, config.stem_filters, config.num_cells


def guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """The registered NASNet-A model whose trunk a state dict (our layout) fits exactly, or None."""
    layout = _layout(state)
    shapes = {k: tuple(v.shape) for k, v in state.items()
              if not k.startswith(HEAD_PREFIXES) and not k.endswith("num_batches_tracked")}
    for name in CONFIGS:
        if _config_layout(name) == layout and _trunk_shapes(name) == shapes:
            return name
    return None


def identify(state: Mapping[str, torch.Tensor], model_name: str) -> str:
    """What weights these are, or that it cannot tell: the hint of a does-not-fit message ("" for the model's own)."""
    guess = guess_architecture(state)
    if guess:
        return f"it looks like {guess} weights" if guess != model_name else ""
    layout = _layout(state)
    if layout is None:
        return "it has no stem (stem.conv.weight), so it is not a whole NASNet: cannot tell what it is"
    kind, width, cells = layout
    what = f"{'CIFAR' if kind == 'cifar' else 'ImageNet'} stem, {width} stem channels, {cells} normal cells"
    same_layout = [name for name in CONFIGS if _config_layout(name) == layout]
    if same_layout:
        return (f"its layout ({what}) is {same_layout[0]}'s but its cells are not NASNet-A's: weights of a searched "
                "genotype? Build the network from the genotype it was trained with (nasnet_zoo.create_model("
                "genotype, cells_per_stack=N, num_conv_filters=F), or nasnet_zoo.training.export.load_trained(run_dir) for a tools/train_cls.py run)")
    return (f"its layout ({what}) matches no registered NASNet-A configuration, so it cannot tell which network "
            "it is (a searched genotype or a custom config?)")
