"""The normalisation a detector trains with: FrozenBN, BN, SyncBN or GN, chosen after the detector is built.

Detectors are built with plain ``BatchNorm2d`` layers (the NASNet cells; the FPN and the conv box head too when
they are normalised) and :func:`convert_norm` swaps them, so every design and genotype gets the same choice:

- ``FrozenBN`` (the default): ``FrozenBatchNorm2d`` with the layer's statistics, for fine-tuning pretrained
  weights on a few images per process (detectron2's default).
- ``BN``: BatchNorm trains. Layers whose parameters are frozen by ``trainable_stages`` become FrozenBN, so
  frozen stages stay frozen. With few images per process the model learns to depend on its batch's statistics
  and eval mode is another function (:func:`small_batch_warning`).
- ``SyncBN``: torch's ``SyncBatchNorm`` (statistics over every DDP process; torch syncs CUDA tensors only).
- ``GN``: ``GroupNorm`` (He et al., "Rethinking ImageNet Pre-training", 2019): per-image statistics, so
  training and eval compute the same function at any batch size; the setting for from-scratch training.

GroupNorm rule: a layer of ``C`` channels gets the largest divisor of ``C`` that is <= ``gn_groups`` groups
(NASNet widths such as 44 or 132 are not multiples of 32; a narrow backbone may have fewer channels than groups).
GN layers cannot take over BatchNorm statistics (a BN layer's running mean and variance have no GN
counterpart), so converting a BN layer that holds trained statistics is an error, not a silent guess.

Hand-written because torchvision has FrozenBatchNorm2d but no converter for a built model, and torch converts
only to SyncBatchNorm (used here for that case).
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn

from .freeze import freeze_batchnorm

log = logging.getLogger(__name__)

NORMS = ("FrozenBN", "BN", "SyncBN", "GN")
#: Images per process below which BatchNorm statistics get too noisy (Wu & He, "Group Normalization", 2018:
#: ImageNet error rises quickly below this batch size).
MIN_BN_BATCH = 8


def check_norm(norm: str) -> str:
    """The canonical spelling of a norm name (case-insensitive), or a ValueError listing the choices."""
    for name in NORMS:
        if norm.lower() == name.lower():
            return name
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)} (model.norm)")


def resolve_frozen_bn(norm: str, frozen_bn: bool | None, *, norm_key: str = "norm",
                      frozen_key: str = "frozen_bn") -> str:
    """``norm`` with the deprecated ``frozen_bn`` flag read into it (true: FrozenBN; false: BN, or ``norm`` when it
    names a trained norm), with a deprecation note. One rule for the config key and the builders' keyword, which
    the messages name (``norm_key``, ``frozen_key``)."""
    norm = check_norm(norm)
    if frozen_bn is None:
        return norm
    if not isinstance(frozen_bn, bool):
        raise ValueError(f"{frozen_key}: expected true/false, got {frozen_bn!r}")
    if frozen_bn and norm != "FrozenBN":
        raise ValueError(f"{frozen_key} true contradicts {norm_key} {norm}; drop {frozen_key} (deprecated)")
    if not frozen_bn and norm == "FrozenBN":
        norm = "BN"
    log.warning("%s is deprecated; read as %s %s (set %s instead)", frozen_key, norm_key, norm, norm_key)
    return norm


def trains_batchnorm(norm: str) -> bool:
    """True when the norm keeps BatchNorm layers in training mode (their running statistics then matter)."""
    return check_norm(norm) in ("BN", "SyncBN")


def gn_group_count(channels: int, groups: int) -> int:
    """Largest divisor of ``channels`` that is <= ``groups`` (the documented GroupNorm rule)."""
    if groups < 1:
        raise ValueError(f"GroupNorm needs at least 1 group, got {groups} (model.gn_groups)")
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def group_norm(channels: int, groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(gn_group_count(channels, groups), channels, eps=eps)


def _holds_statistics(bn: nn.BatchNorm2d) -> bool:
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return False
    return bool(bn.running_mean.abs().max() > 0 or (bn.running_var - 1).abs().max() > 0)


def _replace_batchnorm(module: nn.Module, make: Callable[[nn.BatchNorm2d, str], nn.Module | None],
                       prefix: str = "") -> None:
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.BatchNorm2d):
            new = make(child, path)
            if new is not None:
                setattr(module, name, new)
        else:
            _replace_batchnorm(child, make, path + ".")


def _to_group_norm(groups: int) -> Callable[[nn.BatchNorm2d, str], nn.Module]:
    def make(bn: nn.BatchNorm2d, path: str) -> nn.Module:
        if _holds_statistics(bn):
            raise ValueError(f"model.norm GN cannot take over the trained BatchNorm statistics of {path}: GroupNorm "
                             "has no running mean/variance to put them in. Fine-tune pretrained weights with "
                             "model.norm FrozenBN (or BN), or train GN from scratch (no model.backbone_weights)")
        gn = group_norm(bn.num_features, groups, bn.eps)
        if bn.affine:
            gn.weight.data.copy_(bn.weight.detach())
            gn.bias.data.copy_(bn.bias.detach())
            gn.requires_grad_(bn.weight.requires_grad)
        return gn
    return make


def _frozen_if_not_trained(bn: nn.BatchNorm2d, path: str) -> nn.Module | None:
    if not (bn.affine and not bn.weight.requires_grad):
        return None
    holder = nn.Sequential(bn)  # freeze_batchnorm swaps children, so give the layer a parent
    freeze_batchnorm(holder)
    return holder[0]


def convert_norm(model: nn.Module, norm: str, gn_groups: int = 32) -> nn.Module:
    """Swap every ``BatchNorm2d`` of ``model`` for the chosen norm (in place; returns the model)."""
    norm = check_norm(norm)
    if norm == "FrozenBN":
        return freeze_batchnorm(model)
    if norm == "GN":
        _replace_batchnorm(model, _to_group_norm(gn_groups))
        return model
    _replace_batchnorm(model, _frozen_if_not_trained)
    if norm == "SyncBN":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def fpn_norm_layer(norm: str, gn_groups: int = 32) -> Callable[[int], nn.Module] | None:
    """Norm layer for the FPN and the conv box head: GroupNorm under GN (detectron2's GN recipe), none otherwise.

    Those parts have no pretrained statistics to freeze, and BatchNorm there would bring back the
    small-batch problem; under GN they are built with BatchNorm2d placeholders that :func:`convert_norm` swaps.
    """
    return nn.BatchNorm2d if check_norm(norm) == "GN" else None


def check_norm_runtime(norm: str, device: torch.device, world_size: int) -> None:
    """Refuse SyncBN where torch cannot sync (CPU processes), with the alternatives."""
    if check_norm(norm) == "SyncBN" and world_size > 1 and device.type == "cpu":
        raise ValueError("model.norm SyncBN needs CUDA devices: torch's SyncBatchNorm syncs GPU tensors only. "
                         "On CPU processes use model.norm GN (from scratch) or FrozenBN (pretrained weights)")


def small_batch_warning(norm: str, images_per_process: int, world_size: int) -> str | None:
    """The one-line warning for BatchNorm that trains on too few images, or None; logged when not None."""
    norm = check_norm(norm)
    batch = images_per_process * (world_size if norm == "SyncBN" else 1)
    if not trains_batchnorm(norm) or batch >= MIN_BN_BATCH:
        return None
    where = "images per process" if norm == "BN" else "images across all processes"
    message = (f"model.norm {norm} trains BatchNorm on {batch} {where} (< {MIN_BN_BATCH}): the model learns to "
               "depend on its batch's statistics, so eval-mode results may not reflect training. Use model.norm GN "
               "from scratch, FrozenBN with pretrained weights, or SyncBN with >= 8 images in all.")
    log.warning(message)
    return message


__all__ = ["NORMS", "check_norm", "check_norm_runtime", "convert_norm", "fpn_norm_layer",
           "gn_group_count", "group_norm", "resolve_frozen_bn", "small_batch_warning", "trains_batchnorm"]
