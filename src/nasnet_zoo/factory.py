"""``create_model`` / ``list_models``: registered builders plus pretrained weights and feature wrappers."""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from . import hub
from .features import NASNetFeatures
from .registry import model_builder, model_names


def list_models(pattern: str | None = None, *, pretrained: bool = False) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern or to those with weights."""
    names = model_names(pattern)
    return [n for n in names if hub.weights_for_model(n)] if pretrained else names


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
        hub.load_pretrained(model, None if pretrained is True else pretrained, model_name=name)
    if features_only:
        model = NASNetFeatures(model, out_indices)
    elif out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model
