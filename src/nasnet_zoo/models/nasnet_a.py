"""NASNet-A: the published cells in the three published configurations (TF-slim ``nasnet.py`` hparams).

Each builder is keyword-only; keywords override ``NASNetConfig`` fields. The default config (input size,
normalisation, classes, training data) travels with the model as ``model.pretrained_cfg``.
"""
from __future__ import annotations

from typing import Any

from ..genotypes import NASNET_A, Genotype
from ..nasnet import NASNet, build_nasnet
from ..registry import register_model

# Inputs are RGB in [-1, 1]: mean = std = 0.5 on [0, 1] images (TF-slim inception preprocessing).
_TF_NORM = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

CONFIGS: dict[str, dict[str, Any]] = {
    "nasnet_a_mobile": dict(
        arch=dict(cells_per_stack=4, num_conv_filters=44, stem="imagenet", stem_multiplier=1.0,
                  skip_reduction_layer_input=False, drop_path_keep_prob=1.0, dense_dropout_keep_prob=0.5,
                  bn_eps=1e-3, bn_momentum=0.0003, image_size=224, num_classes=1000),
        data=dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bilinear", dataset="imagenet-1k",
                  notation="4 @ 1056", **_TF_NORM),
    ),
    "nasnet_a_large": dict(
        arch=dict(cells_per_stack=6, num_conv_filters=168, stem="imagenet", stem_multiplier=3.0,
                  skip_reduction_layer_input=True, drop_path_keep_prob=0.7, dense_dropout_keep_prob=0.5,
                  bn_eps=1e-3, bn_momentum=0.0003, image_size=331, num_classes=1000),
        data=dict(input_size=(3, 331, 331), crop_pct=0.911, interpolation="bicubic", dataset="imagenet-1k",
                  notation="6 @ 4032", **_TF_NORM),
    ),
    "nasnet_a_cifar": dict(
        arch=dict(cells_per_stack=6, num_conv_filters=32, stem="cifar", stem_multiplier=3.0,
                  skip_reduction_layer_input=False, drop_path_keep_prob=0.6, dense_dropout_keep_prob=1.0,
                  bn_eps=1e-5, bn_momentum=0.1, image_size=32, num_classes=10),
        data=dict(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear", dataset="cifar-10",
                  notation="6 @ 768", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    ),
}


def build_from_config(name: str, genotype: Genotype = NASNET_A, **overrides: Any) -> NASNet:
    """The network of config ``name``, its fields overridden by ``overrides`` (``penultimate_filters``, the paper's
    F, replaces the config's ``num_conv_filters``), carrying its data config as ``pretrained_cfg``."""
    entry = CONFIGS[name]
    arch = dict(entry["arch"])
    if "penultimate_filters" in overrides:
        del arch["num_conv_filters"]
    model = build_nasnet(genotype, **{**arch, **overrides})
    model.pretrained_cfg = {"architecture": name, **entry["data"], "num_classes": model.config.num_classes}
    if model.config.image_size != entry["arch"]["image_size"]:
        model.pretrained_cfg["input_size"] = (model.config.in_chans, model.config.image_size, model.config.image_size)
    return model


@register_model
def nasnet_a_mobile(**overrides: Any) -> NASNet:
    """NASNet-A Mobile, 4 @ 1056: 5.3M parameters, 564M mult-adds at 224 (paper, table 2)."""
    return build_from_config("nasnet_a_mobile", **overrides)


@register_model
def nasnet_a_large(**overrides: Any) -> NASNet:
    """NASNet-A Large, 6 @ 4032: 88.9M parameters, 23.8B mult-adds at 331 (paper, table 2)."""
    return build_from_config("nasnet_a_large", **overrides)


@register_model
def nasnet_a_cifar(**overrides: Any) -> NASNet:
    """NASNet-A for CIFAR-10, 6 @ 768: 3.3M parameters (paper, table 1)."""
    return build_from_config("nasnet_a_cifar", **overrides)
