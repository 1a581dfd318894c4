"""The one training step of every loop: forward and loss under AMP, backward with a gradient scaler, gradient
clipping, a guard against non-finite losses, the optimizer step and the step's metrics.

A loop keeps its own iteration, data, logging and checkpoints and calls :meth:`TrainStep.run` once per step;
what differs between loops (learning-rate schedule, EMA, averaging gradients over processes) is a
:class:`StepHook`, detectron2's ``HookBase`` habit.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, ContextManager, Iterable, Mapping, Sequence

import torch

#: The one ``amp`` setting: ``auto`` = float16 autocast with a gradient scaler on CUDA, off on CPU.
AMP_SETTINGS = ("off", "auto", "fp16", "bf16")

LossFn = Callable[[], torch.Tensor | Mapping[str, torch.Tensor]]


def amp_setting(value: str | bool, key: str = "amp") -> str:
    """``value`` checked against :data:`AMP_SETTINGS`; a bool (the old spelling: true = auto, false = off, also
    as the strings a config loader makes of them) is read with a FutureWarning. ``key`` names it in messages."""
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        new = "auto" if str(value).lower() == "true" else "off"
        warnings.warn(f"{key}: a true/false value is deprecated, read as {new!r}; write one of "
                      f"{'|'.join(AMP_SETTINGS)} (quote 'off' in YAML)", FutureWarning, stacklevel=2)
        return new
    if value not in AMP_SETTINGS:
        raise ValueError(f"{key} must be one of {', '.join(AMP_SETTINGS)}; got {value!r}")
    return str(value)


def resolve_amp(setting: str | bool, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``setting`` on ``device`` (None: no autocast). fp16 needs CUDA."""
    setting, device = amp_setting(setting), torch.device(device)
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        raise ValueError(f"amp fp16 needs CUDA (the gradient scaler); on {device.type} use bf16 or off")
    return torch.float16


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing for None (as :func:`resolve_amp` returns)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class NonFiniteLossError(FloatingPointError):
    """More non-finite losses in a row than the step allows; ``loss`` and ``parts`` hold the last one."""

    def __init__(self, loss: float, parts: Mapping[str, float]) -> None:
        super().__init__(f"loss is {loss}")
        self.loss, self.parts = loss, dict(parts)


class StepHook:
    """A variation of :class:`TrainStep`; override what it needs. Hooks run in the order given."""

    def before_step(self, step: TrainStep) -> None:
        """Before the forward pass."""

    def after_backward(self, step: TrainStep) -> None:
        """Gradients exist and are still scaled under fp16 (e.g. average them over processes here)."""

    def after_step(self, step: TrainStep, metrics: dict[str, float]) -> None:
        """After the optimizer step, or after a skipped step (``metrics["skipped"] == 1``)."""


class SchedulerStep(StepHook):
    """Steps a learning-rate scheduler after every step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def after_step(self, step: TrainStep, metrics: dict[str, float]) -> None:
        self.scheduler.step()


class TrainStep:
    """One optimisation step, run by :meth:`run` with a loss closure.

    ``amp``: one of :data:`AMP_SETTINGS` (a gradient scaler only for float16). ``grad_clip`` > 0 clips the
    total gradient norm of ``params`` (default: the optimizer's parameters). ``max_skips``: non-finite losses
    skipped in a row before the next one raises :class:`NonFiniteLossError` (0: the first raises; None: never).
    ``reduce`` maps this process's detached loss values (a 1-D tensor) to their mean over processes, so that
    every process takes the same skip decision. The scaler (``.scaler``) belongs in checkpoints.

    The supernet's step, for example: skip every non-finite loss, decide it together over processes
    (``all_reduce_mean`` of :mod:`nasnet_zoo.utils.distributed` is a no-op without a process group), and average
    the sampled path's gradients in a hook (``after_backward``: ``p.grad`` of ``step.params`` not None)::

        core = TrainStep(optimizer, device=device, amp=shared.amp, grad_clip=shared.grad_clip, params=params,
                         max_skips=None, reduce=all_reduce_mean, hooks=[AverageGradients()])
        metrics = core.run(lambda: F.cross_entropy(supernet(x, genotype).float(), y))
        metrics["loss"], metrics["skipped"], metrics["grad_norm"], metrics["lr"]  # float, 0 or 1, float, float
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, device: torch.device | str, amp: str | bool = "off",
                 grad_clip: float = 0.0, params: Iterable[torch.Tensor] | None = None,
                 hooks: Sequence[StepHook] = (), max_skips: int | None = 0,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.optimizer, self.device = optimizer, torch.device(device)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.grad_clip, self.hooks, self.max_skips, self.reduce = grad_clip, list(hooks), max_skips, reduce
        self.params = list(params) if params is not None else \
            [p for group in optimizer.param_groups for p in group["params"]]
        self.skips_in_a_row = 0
        self.skipped_total = 0

    def autocast(self) -> ContextManager:
        """The step's autocast, for evaluation under the same precision."""
        return autocast(self.device, self.amp_dtype)

    def run(self, loss_fn: LossFn) -> dict[str, float]:
        """Call ``loss_fn()`` under autocast (a loss, or named losses that are summed), then step.

        Returns ``loss`` (over processes with ``reduce``), each named loss, ``skipped`` (1: a non-finite loss,
        no update, gradients cleared), ``grad_norm`` (before clipping; NaN when skipped) and ``lr``.
        """
        for hook in self.hooks:
            hook.before_step(self)
        with self.autocast():
            out = loss_fn()
        named = isinstance(out, Mapping)
        parts = dict(out) if named else {"loss": out}
        stacked = torch.stack([v.detach().float() for v in parts.values()])
        values = (self.reduce(stacked) if self.reduce is not None else stacked).tolist()
        total = sum(values)
        metrics = {"loss": total, **(dict(zip(parts, values)) if named else {}),
                   "lr": self.optimizer.param_groups[0]["lr"]}
        self.optimizer.zero_grad(set_to_none=True)
        if math.isfinite(total):
            self.skips_in_a_row = 0
            metrics.update(skipped=0, grad_norm=self._backward_and_step(sum(parts.values()) if named else out))
        else:
            self.skips_in_a_row += 1
            self.skipped_total += 1
            if self.max_skips is not None and self.skips_in_a_row > self.max_skips:
                raise NonFiniteLossError(total, dict(zip(parts, values)))
            metrics.update(skipped=1, grad_norm=math.nan)
        for hook in self.hooks:
            hook.after_step(self, metrics)
        return metrics

    def _backward_and_step(self, loss: torch.Tensor) -> float:
        self.scaler.scale(loss).backward()
        for hook in self.hooks:
            hook.after_backward(self)
        self.scaler.unscale_(self.optimizer)
        # an infinite bound measures the norm only (the gradients are multiplied by exactly 1)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip if self.grad_clip > 0 else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(norm)
