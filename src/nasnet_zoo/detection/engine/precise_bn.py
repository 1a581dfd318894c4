"""PreciseBN: recompute BatchNorm running statistics with the current weights before evaluating or saving.

During training each BatchNorm layer keeps an exponential average of batch statistics taken while the weights
moved, so the eval-mode model normalises with statistics of older weights. Here the detector runs in eval mode
(test scale, test proposals) over training batches with only its BatchNorm layers in training mode and torch's
cumulative averaging (``momentum=None``), so each layer ends with the mean of its per-batch statistics under
the final weights. Under DDP the ranks' averages are averaged. The global RNG states are restored afterwards,
so the training that follows draws the same augmentations as a run without this pass (resume stays exact).

This fixes stale statistics, not a model that learned to depend on the statistics of its own small batch:
for that use GN or FrozenBN (:mod:`.norms`). Hand-written because torch and torchvision have no PreciseBN;
it follows the idea of fvcore's ``update_bn_stats`` (detectron2's PreciseBN hook) on torch's own cumulative
average.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from nasnet_zoo.utils.checkpoint import rng_state, set_rng_state


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The layers whose running statistics training updates (BatchNorm and SyncBatchNorm, not FrozenBN)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[list[torch.Tensor]], num_iter: int,
                       device: torch.device) -> int:
    """Replace the running statistics of every training BatchNorm layer by their average over ``num_iter``
    batches of images (lists of CHW tensors); returns the number of batches used (0 if nothing to do).

    Every DDP process must call this with the same ``num_iter`` (SyncBN layers sync in the loop).
    """
    layers = batchnorm_layers(model)
    if not layers or num_iter < 1:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in layers]
    rng = rng_state()
    model.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches of this pass
        bn.train()
    used = 0
    try:
        for images in batches:
            if used == num_iter:
                break
            model([im.to(device, non_blocking=True) for im in images])
            used += 1
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        model.train(was_training)
        set_rng_state(rng)
    if used and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for bn in layers:
            for stat in (bn.running_mean, bn.running_var):
                dist.all_reduce(stat)
                stat.div_(dist.get_world_size())
    return used
