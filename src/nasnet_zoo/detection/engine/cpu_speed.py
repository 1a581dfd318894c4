"""Guidance for training a detector on a CPU: one line at the start when the image size will clearly be slow,
and one line with the measured seconds per iteration after the first few iterations.

detectron2's convention (shorter side 800, longer at most 1333) upscales small photos and costs tens of seconds
per iteration on a few CPU cores, where the same images at 320 px take a few seconds (docs/detection.md has the
measured table). Nothing here changes the user's settings; it only says what they cost and what to try.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

log = logging.getLogger(__name__)

#: A resized shorter side from this size up makes CPU training clearly slow (docs/detection.md: s/iter by size).
SLOW_SHORT_SIDE = 500
#: Iterations timed after the first one (which also pays for allocations and oneDNN's first-call set-up).
MEASURED_ITERS = 3
ADVICE = "for a CPU, try --image-size 320, or the demo config (configs/det/demo.yaml) as a starting point"


@dataclass(frozen=True)
class ResizedSize:
    """The typical training image before and after the detector's resize (median aspect ratio and size)."""

    height: int
    width: int
    original_height: int
    original_width: int

    @property
    def short(self) -> int:
        return min(self.height, self.width)


def resized_size(image_sizes: Sequence[tuple[int, int]], min_size: Sequence[int], max_size: int) -> ResizedSize:
    """torchvision's resize (shorter side to the largest ``min_size``, longer side at most ``max_size``) applied
    to the median training image; ``image_sizes`` are (height, width)."""
    height = int(statistics.median(h for h, _ in image_sizes))
    width = int(statistics.median(w for _, w in image_sizes))
    scale = min(max(min_size) / min(height, width), max_size / max(height, width))
    return ResizedSize(round(height * scale), round(width * scale), height, width)


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


class CpuSpeedNote:
    """Says once that training will be slow (``start``), then the measured s/iter (``iteration_done``).

    Active only on a CPU at a resized shorter side of :data:`SLOW_SHORT_SIDE` px or more, and only where
    ``enabled`` (the main process).
    """

    def __init__(self, size: ResizedSize, device: torch.device, max_iter: int, *, enabled: bool = True) -> None:
        self.size, self.max_iter = size, max_iter
        self.active = enabled and device.type == "cpu" and size.short >= SLOW_SHORT_SIDE
        self._first_done: float | None = None
        self.measured: float | None = None  # seconds per iteration, once reported

    def _where(self) -> str:
        s = self.size
        origin = "upscaled from" if s.short > min(s.original_height, s.original_width) else "from"
        return f"{s.width}x{s.height} px ({origin} {s.original_width}x{s.original_height} images)"

    def start(self) -> None:
        if self.active:
            log.warning("slow for a CPU: input.min_size / max_size resize the images to %s, which costs seconds "
                        "to tens of seconds per iteration on a few cores (%d torch threads here); %s. The "
                        "measured speed follows after %d iterations.", self._where(), torch.get_num_threads(),
                        ADVICE, MEASURED_ITERS + 1)

    def iteration_done(self, done: int, iteration: int) -> None:
        """``done`` iterations run in this process so far; ``iteration`` is the run's count (with resumed ones)."""
        if not self.active or self.measured is not None:
            return
        now = time.perf_counter()
        if done == 1:
            self._first_done = now
        elif self._first_done is not None and (done == 1 + MEASURED_ITERS or iteration >= self.max_iter):
            self.measured = (now - self._first_done) / (done - 1)
            left = self.max_iter - iteration
            log.warning("measured on this CPU: %.1f s/iter at %s, %d torch threads; the %d iteration%s left would "
                        "take %s. %s (docs/detection.md: s/iter at 320, 512 and 800 px).", self.measured,
                        self._where(), torch.get_num_threads(), left, "" if left == 1 else "s",
                        _duration(self.measured * left), ADVICE[0].upper() + ADVICE[1:])
