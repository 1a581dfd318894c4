"""``create_model``, the one NASNet builder, and ``list_models``.

Every network of the package is built here, whatever asks for it: a classifier, a backbone, a detector's trunk,
a search child or a retrained cell (timm's ``build_model_with_cfg`` habit). A registered name and a genotype plus
its sizes take the same keywords, so published weights, feature maps and size names work alike for both.
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from . import hub
from .features import NASNetFeatures
from .genotypes import Genotype
from .nasnet import build_nasnet
from .registry import builder, registered_names


def list_models(pattern: str | None = None, *, pretrained: bool = False) -> list[str]:
    """Registered model names, optionally filtered by a shell-style pattern or to those with weights."""
    names = registered_names("model", pattern)
    return [n for n in names if hub.weights_for_model(n)] if pretrained else names


def create_model(name: str | Genotype, *, pretrained: bool | str = False, num_classes: int | None = None,
                 features_only: bool = False, out_indices: Sequence[int] | None = None,
                 drop_path_keep_prob: float | None = None, **settings: Any) -> nn.Module:
    """Build a registered model by name, or a NASNet from any genotype plus its sizes.

    Sizes and settings are ``NASNetConfig`` fields for both: ``cells_per_stack`` (N), ``num_conv_filters`` (the
    base filter count) or ``penultimate_filters`` (the paper's F), ``stem``, ... A name takes them as overrides of
    its config; a genotype needs ``cells_per_stack`` and one of the two filter counts (``stem`` "imagenet" or
    "cifar" brings TF-slim's defaults for that stem, see ``build_nasnet``).
    ``pretrained=True`` loads a named model's default weights, a string names a manifest tag
    (``"nasnet_a_mobile.tf_in1k"``) or a local file. ``features_only`` returns a backbone that outputs a list
    of feature maps and carries ``feature_info``.
    """
    if num_classes is not None:
        settings["num_classes"] = num_classes
    if drop_path_keep_prob is not None:
        settings["drop_path_keep_prob"] = drop_path_keep_prob
    if isinstance(name, Genotype):
        if pretrained:
            raise ValueError("published weights are for registered names; build the genotype's network, then load "
                             "a state dict with nasnet_zoo.hub.load_state_dict(model, state)")
        model: nn.Module = build_nasnet(name, **settings)
    else:
        model = builder("model", name)(**settings)
        if pretrained:
            hub.load_pretrained(model, None if pretrained is True else pretrained, model_name=name)
    if features_only:
        model = NASNetFeatures(model, out_indices)  # type: ignore[arg-type]
    elif out_indices is not None:
        raise ValueError("out_indices only applies with features_only=True")
    return model
