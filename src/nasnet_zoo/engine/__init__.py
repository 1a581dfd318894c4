"""The training-step core every training loop shares (a leaf: it imports torch only)."""
from .train_step import (AMP_SETTINGS, NonFiniteLossError, SchedulerStep, StepHook, TrainStep, amp_setting, autocast,
                         resolve_amp)

__all__ = ["AMP_SETTINGS", "NonFiniteLossError", "SchedulerStep", "StepHook", "TrainStep", "amp_setting", "autocast",
           "resolve_amp"]
