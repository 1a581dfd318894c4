"""Load weights into a model: by manifest name or tag, by local path, or from a foreign state dict in memory."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..convert import convert_state_dict, guess_source
from ..convert.files import UnreadableWeightsError, read_weights_file
from .download import extract_dir, fetch
from .fitting import load_fitted
from .manifest import Weights, default_weights, get_weights


def resolve(weight: str | None, model_name: str) -> tuple[Path, Weights | None]:
    """(file, manifest entry or None) for ``pretrained=True`` (None), a manifest name/tag, or a local path."""
    if weight is not None and (os.sep in weight or Path(weight).expanduser().exists()):
        path = Path(weight).expanduser()
        if not path.exists() and not Path(f"{path}.index").is_file():
            raise FileNotFoundError(f"weight file {path} does not exist")
        return path, None
    entry = default_weights(model_name) if weight is None else get_weights(weight, model_name)
    if entry.architecture != model_name:
        raise ValueError(f"weights {entry.name} are for {entry.architecture}, not {model_name}: use "
                         f"create_model({entry.architecture!r}, pretrained={entry.name!r})")
    return fetch(entry), entry


def load_pretrained(model: nn.Module, weight: str | None, *, model_name: str, source: str | None = None) -> None:
    """Load weights into ``model`` (built as ``model_name``), converting foreign formats.

    ``weight`` is None for the architecture's default, a manifest name or tag, or a local file path;
    ``source`` overrides the guessed layout of a local file (``"cadene"``, ``"timm"``, ``"tf"``, ``"ours"``).
    """
    path, entry = resolve(weight, model_name)
    try:
        raw, found_source, metadata = read_weights_file(path, source or (entry.source if entry else None),
                                                        extract_dir=extract_dir())
    except UnreadableWeightsError as e:
        if entry is None:
            raise
        raise UnreadableWeightsError(e.path, e.expected, e.cause, fix=(
            f"delete it and download it again from {' or '.join(entry.urls)} (loading {entry.name} again does "
            "that)")) from None
    arch = metadata.get("architecture")
    if arch and arch != model_name:
        raise ValueError(f"{path} holds weights for {arch}, not {model_name}: use create_model({arch!r}, pretrained=...)")
    state = dict(raw) if found_source == "ours" else convert_state_dict(raw, source=found_source)
    load_fitted(model, state, origin=str(path), model_name=model_name)
    if entry is not None:
        model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **entry.meta(),
                                "num_classes": model.config.num_classes}
        warn_padding(model, entry.padding, entry.name)
    elif found_source == "timm":
        warn_padding(model, "timm", str(path))


def load_state_dict(model: nn.Module, state_dict: Mapping[str, Any], *, source: str | None = None) -> None:
    """Load a state dict of any supported layout (ours, Cadene, timm, TF-slim variables) into ``model``.

    The one-line way to use a foreign port's weights you already hold in memory; it does what ``pretrained=``
    does with a file: converts, drops TF's background class for a 1000-class model, and leaves an auxiliary
    head the weights lack at its random init (no ``aux_head=False`` needed).
    """
    found = source or guess_source(state_dict)
    state = dict(state_dict) if found == "ours" else convert_state_dict(state_dict, source=found)
    name = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
    load_fitted(model, state, origin=f"the {found} state dict", model_name=name)
    if found == "timm":
        warn_padding(model, "timm", "this timm state dict")


def warn_padding(model: nn.Module, needed: str, what: str) -> None:
    mode = getattr(getattr(model, "config", None), "padding", needed)
    if mode != needed:
        warnings.warn(f"weights {what} reproduce their published outputs with padding={needed!r} but this model uses "
                      f"padding={mode!r}; build it with create_model(..., padding={needed!r}) to match them exactly",
                      stacklevel=3)
