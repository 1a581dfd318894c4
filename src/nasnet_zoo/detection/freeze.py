"""Frozen BatchNorm and stage freezing for NASNet backbones (detection fine-tuning habits)."""
from __future__ import annotations

import math

from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from nasnet_zoo.nasnet import NASNet

#: Backbone stages by output stride: 1 = stem conv + first stem cell (4), 2 = stride 8, 3 = 16, 4 = 32.
NUM_STAGES = 4


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


def cell_stage(stride: int) -> int:
    """Stage number of a cell with this output stride (the stem conv belongs to stage 1)."""
    return max(1, int(math.log2(stride)) - 1)


def set_trainable_stages(model: NASNet, trainable_stages: int) -> None:
    """Keep the last ``trainable_stages`` stages trainable and freeze the earlier ones (0 freezes all)."""
    if not 0 <= trainable_stages <= NUM_STAGES:
        raise ValueError(f"trainable_stages must be in [0, {NUM_STAGES}], got {trainable_stages}")
    first_trainable = NUM_STAGES - trainable_stages + 1
    model.stem.requires_grad_(first_trainable <= 1)
    for info in model.cell_info():
        model.cells[info["name"]].requires_grad_(cell_stage(info["stride"]) >= first_trainable)
