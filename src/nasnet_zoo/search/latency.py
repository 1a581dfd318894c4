"""Hardware-aware reward: MnasNet's soft latency constraint, with latency measured by our own inference path.

reward = accuracy * (latency / target) ** weight, weight = -0.07 by default (Tan et al. 2019, "soft"
constraint: a child twice as slow as the target scores 4.7% less, one twice as fast 5.0% more).

A child's latency is the median wall time of ``runs`` forward passes of ``optimize_for_inference`` applied to
``create_model(genotype, ...)`` at the stated size (``LatencyConfig``), after ``warmup`` passes, with a fixed
number of torch threads on CPU (or synchronised CUDA timings). The median resists the bursts of other jobs on
a shared machine. Latencies are cached per genotype, and a resumed search takes them from its journal, so a
genotype is measured once per search.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import torch

from ..genotypes import Genotype
from ..inference import optimize_for_inference
from ..factory import create_model
from .journal import genotype_key

STEMS = ("cifar", "imagenet")


@dataclass
class LatencyConfig:
    """The latency objective and the network it times (not the proxy child: state the deployment size here)."""

    target_ms: float | None = None   # T in milliseconds; None = accuracy alone is the reward
    weight: float = -0.07            # w: MnasNet's soft constraint uses -0.07 on both sides of T
    image_size: int = 32
    cells_per_stack: int = 2         # N
    num_conv_filters: int = 8        # base filter count F (was ``filters``)
    stem: str = "cifar"              # "imagenet" for a 224 px mobile-style network
    num_classes: int = 10
    batch_size: int = 1
    device: str = "cpu"              # "cpu" or "cuda" / "cuda:i"
    threads: int = 1                 # torch intra-op threads while timing on CPU
    warmup: int = 3
    runs: int = 11                   # timed forward passes; the latency is their median
    #: old key -> field (config.py reads the old one with a FutureWarning)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"filters": "num_conv_filters"}

    @property
    def enabled(self) -> bool:
        return self.target_ms is not None

    def validate(self) -> None:
        if self.target_ms is not None and not self.target_ms > 0:
            raise ValueError(f"a latency target must be > 0 ms, got {self.target_ms}; give --latency-target-ms "
                             "a positive number, or leave it out for an accuracy-only reward")
        if self.weight > 0:
            raise ValueError(f"latency.weight must be <= 0 (a slower child must not score higher), got {self.weight}")
        for name in ("image_size", "cells_per_stack", "num_conv_filters", "num_classes", "batch_size", "threads",
                     "runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"latency.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"latency.warmup must be >= 0, got {self.warmup}")
        if self.stem not in STEMS:
            raise ValueError(f"latency.stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        device = torch.device(self.device)  # raises on a malformed name
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"latency.device must be cpu or cuda[:i], got {self.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"latency.device={self.device!r} but torch sees no CUDA device; use latency.device cpu")

    def conditions(self) -> str:
        """One line naming what was timed, for plots and reports."""
        where = f"{self.device}, {self.threads} thread(s)" if self.device == "cpu" else self.device
        return (f"N={self.cells_per_stack}, F={self.num_conv_filters}, {self.stem} stem, {self.image_size} px, "
                f"batch {self.batch_size}, {where}, median of {self.runs}")


def soft_constraint_reward(accuracy: float, latency_ms: float, target_ms: float, weight: float = -0.07) -> float:
    """MnasNet's soft-constraint objective ``accuracy * (latency / target) ** weight``."""
    if latency_ms <= 0 or target_ms <= 0:
        raise ValueError(f"latency and target must be > 0 ms, got {latency_ms} and {target_ms}")
    return float(accuracy) * (latency_ms / target_ms) ** weight


@torch.inference_mode()
def _median_forward_ms(model: torch.nn.Module, x: torch.Tensor, warmup: int, runs: int) -> float:
    cuda = x.device.type == "cuda"
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        model(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure_latency_ms(genotype: Genotype, config: LatencyConfig) -> float:
    """Median milliseconds per forward pass of the genotype's network in inference mode (see module doc).

    The weights are random (latency does not depend on their values) and drawn from a forked RNG, so measuring
    never moves the caller's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(genotype, cells_per_stack=config.cells_per_stack, num_conv_filters=config.num_conv_filters,
                             stem=config.stem, num_classes=config.num_classes, image_size=config.image_size,
                             aux_head=False).eval()
        x = torch.randn(config.batch_size, 3, config.image_size, config.image_size)
    device = torch.device(config.device)
    fast = optimize_for_inference(model).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _median_forward_ms(fast, x.to(device), config.warmup, config.runs)
    finally:
        torch.set_num_threads(threads)


class LatencyObjective:
    """``score(genotype, accuracy)`` for a search: latency measured once per genotype, then the soft reward.

    ``records`` are journal lines; those carrying ``latency_ms`` fill the cache, so a resumed search measures
    again only what it never journaled.
    """

    def __init__(self, config: LatencyConfig, records: Iterable[dict[str, Any]] = ()) -> None:
        config.validate()
        if not config.enabled:
            raise ValueError("LatencyObjective needs latency.target_ms (--latency-target-ms)")
        self.config = config
        self._cache: dict[str, float] = {}
        for record in records:
            if record.get("latency_ms") is not None:
                self._cache.setdefault(genotype_key(record["genotype"]), record["latency_ms"])
        self.measured = 0  # latencies timed by this object (not taken from the journal or the cache)

    def latency_ms(self, genotype: Genotype) -> float:
        key = genotype_key(genotype)
        if key not in self._cache:
            self._cache[key] = round(measure_latency_ms(genotype, self.config), 4)
            self.measured += 1
        return self._cache[key]

    def score(self, genotype: Genotype, accuracy: float) -> dict[str, float]:
        """The journal fields of a child: its accuracy, its latency and the reward PPO sees."""
        latency = self.latency_ms(genotype)
        return {"accuracy": accuracy, "latency_ms": latency,
                "reward": soft_constraint_reward(accuracy, latency, float(self.config.target_ms), self.config.weight)}
