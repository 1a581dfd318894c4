"""Metrics as JSON lines plus TensorBoard scalars (detectron2's habit), written by the main process only.

TensorBoard is the ``tensorboard`` extra. Without it a run still writes ``metrics.jsonl`` (the record every tool
here reads) and says once, in one line, how to get the TensorBoard scalars; training never stops for it.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

from .io import append_jsonl

log = logging.getLogger(__name__)
_said_no_tensorboard = False


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (the extra) is installed; torch's writer needs it."""
    return importlib.util.find_spec("tensorboard") is not None


def _no_tensorboard_once() -> None:
    global _said_no_tensorboard
    if not _said_no_tensorboard:
        _said_no_tensorboard = True
        log.warning("TensorBoard scalars are off (metrics.jsonl has every figure): they need the 'tensorboard' "
                    "extra: pip install 'nasnet-zoo[tensorboard]'")


class MetricsLogger:
    """``log(step_key=step, **scalars)`` appends one JSON line and mirrors numbers to TensorBoard."""

    def __init__(self, output_dir: str | Path, *, step_key: str = "step", enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.step_key = step_key
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            if tensorboard_available():
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))
            else:
                _no_tensorboard_once()

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, record, durable=False)
        if self._tb is not None:
            step = int(record.get(self.step_key, 0))
            for key, value in record.items():
                if key != self.step_key and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
