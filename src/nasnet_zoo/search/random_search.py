"""Random search: the paper's baseline, sampling every decision uniformly from its valid choices."""
from __future__ import annotations

from typing import Any

import numpy as np

from .spaces import SearchSpace
from .strategy import Proposal


class RandomStrategy:
    name = "random"
    batch = 1  # one stream of draws: the children are the same however many are proposed at once

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)
        self._log_prob = -float(sum(np.log(valid) for _, valid in space.steps()))

    def propose(self, n: int) -> list[Proposal]:
        out = []
        for _ in range(n):
            decisions = tuple(self.space.random_decisions(self.rng))
            out.append(Proposal(decisions, self.space.to_genotype(decisions), self._log_prob))
        return out

    def observe(self, decisions: tuple[int, ...], log_prob: float, reward: float) -> None:
        return None

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
