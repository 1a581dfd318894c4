"""Rewards for a child: the oracle (no training, for checking the RL machinery) and the proxy task."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..genotypes import Genotype
from .spaces import SearchSpace


@dataclass
class ChildResult:
    """How a child ended: ``status`` is 'ok', or why it got reward 0 ('nan', 'timeout', 'error', ...)."""

    reward: float
    status: str = "ok"
    reason: str = ""
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class OracleReward:
    """Fraction of decisions that match a hidden target genotype drawn from ``seed``: milliseconds per child.

    Only a working controller-plus-PPO loop learns to raise it, which makes it the RL machinery's test.
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.target = np.array(space.random_decisions(np.random.default_rng([seed, 0x0AC1E])))

    def __call__(self, genotype: Genotype, seed: int = 0, device: str = "cpu") -> ChildResult:
        start = time.perf_counter()
        match = float(np.mean(np.array(self.space.to_decisions(genotype)) == self.target))
        return ChildResult(reward=match, seconds=time.perf_counter() - start)
