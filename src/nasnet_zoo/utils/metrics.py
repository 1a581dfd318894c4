"""Metrics as JSON lines plus TensorBoard scalars (detectron2's habit), written by the main process only."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .io import append_jsonl


class MetricsLogger:
    """``log(step_key=step, **scalars)`` appends one JSON line and mirrors numbers to TensorBoard."""

    def __init__(self, output_dir: str | Path, *, step_key: str = "step", enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.step_key = step_key
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but stay usable without it
                self._tb = None

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
