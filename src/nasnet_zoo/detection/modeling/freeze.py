"""Frozen BatchNorm and stage freezing for NASNet backbones (detection fine-tuning habits).

Stages use detectron2's names: ``stage{k}`` holds the cells of stride 2**k, so ``stage2`` .. ``stage5`` are strides
4 .. 32. NASNet has no separate stem stage: its stride-2 stem conv belongs to ``stage2`` with the first stem cell
(deeper strides, in networks with more reductions, count as ``stage5``).
"""
from __future__ import annotations

import math

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from nasnet_zoo.nasnet import NASNetTrunk

#: The backbone stages, shallow to deep; ``trainable_stages=k`` trains the last k of them.
STAGES = ("stage2", "stage3", "stage4", "stage5")
NUM_STAGES = len(STAGES)


def stage_name(stride: int) -> str:
    """detectron2's name for maps of this stride: ``stage{k}`` has stride 2**k (stage2 .. stage5: 4 .. 32)."""
    return f"stage{int(math.log2(stride))}"


def stage_of(stride: int) -> str:
    """The stage (one of ``STAGES``) that a stem or cell with this output stride is frozen or trained with."""
    return stage_name(min(max(stride, 4), 32))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d holding the same statistics (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            if child.track_running_stats:
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def stage_count(count: int, key: str) -> int:
    """``count`` when it counts stages (0 to ``NUM_STAGES``), else a ValueError naming ``key`` and the stages."""
    if not 0 <= count <= NUM_STAGES:
        raise ValueError(f"{key} must be in [0, {NUM_STAGES}] (a count of the stages {', '.join(STAGES)}: strides "
                         f"<= 4, 8, 16, 32), got {count}")
    return count


def set_trainable_stages(model: NASNetTrunk, trainable_stages: int) -> None:
    """Keep the last ``trainable_stages`` of ``STAGES`` trainable and freeze the earlier ones (0 freezes all).

    Works on a whole NASNet or on any range of its trunk (a backbone or box head holds only some stages).
    """
    trainable = set(STAGES[NUM_STAGES - stage_count(trainable_stages, "trainable_stages"):])
    for info in model.output_info():
        part = model.stem if info["index"] == 0 else model.cells[info["name"]]
        part.requires_grad_(stage_of(info["stride"]) in trainable)


def freeze_stages(model: NASNetTrunk, freeze_at: int, key: str = "freeze_at") -> None:
    """detectron2's count, the inverse of ``trainable_stages``: freeze the first ``freeze_at`` of ``STAGES``."""
    set_trainable_stages(model, NUM_STAGES - stage_count(freeze_at, key))
