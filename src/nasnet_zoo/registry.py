"""Model registry: ``create_model`` / ``list_models`` by name, timm style."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Sequence

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a keyword-only builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str | None = None, *, pretrained: bool = False) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern or to those with weights."""
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if pretrained:
        from .hub import weights_for_model
        names = [n for n in names if weights_for_model(n)]
    return names


def is_model(name: str) -> bool:
    return name in _MODELS


def model_builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (nasnet_zoo.list_models() lists all {len(_MODELS)})")
    return _MODELS[name]


def create_model(name: str, *, pretrained: bool | str = False, num_classes: int | None = None,
                 features_only: bool = False, out_indices: Sequence[int] | None = None,
                 drop_path_keep_prob: float | None = None, **overrides: Any) -> nn.Module:
    """Build a model by name.

    ``pretrained=True`` loads the model's default weights, a string names a manifest tag
    (``"nasnet_a_mobile.tf_in1k"``) or a local file. ``features_only`` returns a backbone that outputs a list
    of feature maps and carries ``feature_info``. Other keywords override ``NASNetConfig`` fields.
    """
    builder = model_builder(name)
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if drop_path_keep_prob is not None:
        kwargs["drop_path_keep_prob"] = drop_path_keep_prob
    model = builder(**kwargs)
    if pretrained:
        from .hub import load_pretrained
        load_pretrained(model, None if pretrained is True else pretrained, model_name=name)
    if features_only:
        from .features import NASNetFeatures
        model = NASNetFeatures(model, out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model
