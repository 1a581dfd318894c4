"""``optimize_for_inference``: an eval-only copy of a NASNet with equal outputs and less work per image."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .fused_cell import FusedCell, ReluMemo
from .fused_ops import fuse_conv_bn

__all__ = ["optimize_for_inference"]


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """An eval-only copy of a NASNet (or its ``features_only`` backbone) with equal outputs, faster on CPU.

    The copy refuses training mode: its BatchNorms are gone, so training it would silently learn nothing
    about batch statistics.
    """
    if not (hasattr(model, "stem") and hasattr(model, "cells")):
        raise TypeError(f"optimize_for_inference expects a NASNet or NASNetFeatures, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    stem_conv = fuse_conv_bn(fused.stem.conv, fused.stem.bn)
    stem: list[nn.Module] = [_ToChannelsLast(), stem_conv] if channels_last else [stem_conv]
    fused.stem = nn.Sequential(*stem)
    relu_memo = ReluMemo()
    for name, cell in list(fused.cells.items()):
        fused.cells[name] = FusedCell(cell, relu_memo)
    if getattr(fused, "aux_head", None) is not None:
        fused.aux_head = None  # runs only in training
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    fused.train = _refuse_training.__get__(fused)  # type: ignore[method-assign]
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def _refuse_training(self: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise RuntimeError("this model was optimised for inference (BatchNorm folded into convolutions); "
                           "train the original model and call optimize_for_inference again")
    return self


