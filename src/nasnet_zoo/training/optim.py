"""Optimizers and learning-rate schedules of the recipes, stepped once per training step."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import SolverSettings


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow computes it, which the paper's ImageNet recipe assumes.

    Unlike ``torch.optim.RMSprop``, epsilon sits inside the square root and the mean square starts at one;
    with the paper's epsilon of 1.0 the two optimizers differ a lot. Weight decay is added to the gradient.
    """

    def __init__(self, params: Iterable, lr: float, *, decay: float = 0.9, momentum: float = 0.9,
                 eps: float = 1.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    state["momentum"] = torch.zeros_like(p)
                square_avg, buf = state["square_avg"], state["momentum"]
                square_avg.mul_(group["decay"]).addcmul_(grad, grad, value=1 - group["decay"])
                buf.mul_(group["momentum"]).addcdiv_(grad, square_avg.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(buf)
        return loss


def build_optimizer(params: Iterable, solver: SolverSettings) -> torch.optim.Optimizer:
    if solver.optimizer == "sgd":
        return torch.optim.SGD(params, lr=solver.lr, momentum=solver.momentum, nesterov=solver.nesterov,
                               weight_decay=solver.weight_decay)
    if solver.optimizer == "rmsprop":
        return RMSpropTF(params, solver.lr, decay=solver.rmsprop_decay, momentum=solver.momentum,
                         eps=solver.rmsprop_eps, weight_decay=solver.weight_decay)
    raise ValueError(f"unknown solver.optimizer {solver.optimizer!r}; use 'sgd' or 'rmsprop'")


def lr_factor(step: int, *, total_steps: int, steps_per_epoch: int, solver: SolverSettings) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total_steps``."""
    warm = min(1.0, (step + 1) / solver.warmup_steps) if solver.warmup_steps else 1.0
    if solver.schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if solver.schedule == "exponential":
        decays = math.floor(step / (solver.decay_epochs * steps_per_epoch))
        return warm * solver.decay_rate ** decays
    if solver.schedule == "constant":
        return warm
    raise ValueError(f"unknown solver.schedule {solver.schedule!r}; use 'cosine', 'exponential' or 'constant'")


def build_scheduler(optimizer: torch.optim.Optimizer, solver: SolverSettings, *, total_steps: int,
                    steps_per_epoch: int) -> LambdaLR:
    lr_factor(0, total_steps=total_steps, steps_per_epoch=steps_per_epoch, solver=solver)  # reject bad names now
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps=total_steps,
                                                      steps_per_epoch=steps_per_epoch, solver=solver))
