"""``optimize_for_inference``: an eval-only copy of a NASNet with equal outputs and less work per image."""
from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import nn

from ..layers.fused import fuse_conv_bn
from ..nasnet import NASNetTrunk
from .fused_cell import FusedCell, ReluMemo

__all__ = ["fuse_trunk", "optimize_for_inference", "unfusable_norms"]

Model = TypeVar("Model", bound=nn.Module)


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def fuse_trunk(trunk: NASNetTrunk, *, channels_last: bool = True, relu_memo: ReluMemo | None = None) -> None:
    """Swap ``trunk``'s stem (if it has one) and cells for their fused forms, in place.

    The BNs are folded into the convs they follow, so the trunk's own tensors change: call it on a copy. A
    model made of several trunk ranges (a detector's backbone and box head) fuses each of them.
    """
    if trunk.stem is not None:
        stem_conv = fuse_conv_bn(trunk.stem.conv, trunk.stem.bn)
        trunk.stem = nn.Sequential(*([_ToChannelsLast(), stem_conv] if channels_last else [stem_conv]))
    relu_memo = relu_memo or ReluMemo()
    for name, cell in list(trunk.cells.items()):
        trunk.cells[name] = FusedCell(cell, relu_memo)
    if getattr(trunk, "aux_head", None) is not None:
        trunk.aux_head = None  # runs only in training


def optimize_for_inference(model: Model, *, channels_last: bool = True) -> Model:
    """An eval-only copy of a NASNet, any range of its trunk (``features_only`` backbones, the detection
    backbones and box head), or any model that holds such ranges (a whole detector, of either design and any
    genotype), with equal outputs, faster on CPU.

    In a detector only the NASNet cells are fused; the FPN, RPN and box predictor run as they are. The copy
    refuses training mode: its BatchNorms are gone, so training it would silently learn nothing about batch
    statistics.
    """
    trunks = _top_level_trunks(model)
    if not trunks:
        raise TypeError(f"optimize_for_inference expects a NASNet, a range of its trunk (NASNetFeatures, "
                        f"NASNetRPNBackbone, NASNetBoxHead) or a model holding them, got {type(model).__name__}")
    unfusable = unfusable_norms(model)
    if unfusable:
        raise TypeError(f"{type(model).__name__} normalises its cells with {unfusable[0]}, which cannot be folded "
                        "into the convolutions (only BatchNorm and FrozenBatchNorm2d can); run it eagerly")
    fused = copy.deepcopy(model).eval()
    for trunk in _top_level_trunks(fused):
        fuse_trunk(trunk, channels_last=channels_last)
        if channels_last:
            trunk.to(memory_format=torch.channels_last)
    fused.train = _refuse_training.__get__(fused)  # type: ignore[method-assign]
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def unfusable_norms(model: nn.Module) -> list[str]:
    """Names of the norm layers inside ``model``'s NASNet cells that fusion cannot fold (GroupNorm, ...)."""
    found = []
    for trunk in _top_level_trunks(model):
        for module in trunk.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)):
                found.append(type(module).__name__)
    return found


def _top_level_trunks(model: nn.Module) -> list[NASNetTrunk]:
    """The NASNet trunk ranges in ``model`` that are not inside another one (the model itself if it is one)."""
    if isinstance(model, NASNetTrunk):
        return [model]
    found: list[NASNetTrunk] = []
    for child in model.children():
        found.extend(_top_level_trunks(child))
    return found


def _refuse_training(self: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise RuntimeError("this model was optimised for inference (BatchNorm folded into convolutions); "
                           "train the original model and call optimize_for_inference again")
    return self
