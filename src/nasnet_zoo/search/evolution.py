"""Regularized evolution (Real, Aggarwal, Huang and Le, AAAI 2019; AmoebaNet): aging evolution of a population.

The first ``population`` children are random. Every later child is a copy of the best of ``sample_size``
members drawn at random from the population, with one decision mutated to another valid choice. Each finished
child joins the population and the oldest member leaves it, so a cell survives by having good children, not by
one lucky evaluation. Defaults: population 10, sample size 3, NAS-Bench-201's settings for its REA baseline
(Dong and Yang, ICLR 2020; its R-EA script), since budgets here are hundreds of queries; Real et al. used
P = 100, S = 25 for 20,000 children.

The population is rebuilt exactly by replaying the journal (every finished child joins it in journal order), so
a resume needs nothing else. With worker backends, children proposed while fewer than ``population`` have
finished are random, as with the paper's asynchronous workers.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spaces import SearchSpace, mutate
from .strategy import Proposal


@dataclass
class EvolutionConfig:
    population: int = 10
    sample_size: int = 3

    def validate(self) -> None:
        if self.population < 1 or not 1 <= self.sample_size <= self.population:
            raise ValueError(f"evolution needs population >= 1 and 1 <= sample_size <= population; got "
                             f"population {self.population}, sample_size {self.sample_size}")


class EvolutionStrategy:
    name = "evolution"
    batch = 1  # sequential when evaluation is instantaneous: every child sees the population its parent left

    def __init__(self, space: SearchSpace, config: EvolutionConfig = EvolutionConfig(), seed: int = 0) -> None:
        config.validate()
        self.space = space
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.population: deque[tuple[tuple[int, ...], float]] = deque()

    def _next(self) -> list[int]:
        if len(self.population) < self.config.population:  # still filling with random cells
            return self.space.random_decisions(self.rng)
        members = list(self.population)
        drawn = self.rng.choice(len(members), size=min(self.config.sample_size, len(members)), replace=False)
        parent = max((members[i] for i in drawn), key=lambda m: m[1])  # the first drawn wins a tie
        return mutate(self.space, parent[0], self.rng)

    def propose(self, n: int) -> list[Proposal]:
        out = []
        for _ in range(n):
            decisions = tuple(self._next())
            out.append(Proposal(decisions, self.space.to_genotype(decisions), 0.0))
        return out

    def observe(self, decisions: tuple[int, ...], log_prob: float, reward: float) -> None:
        self.population.append((tuple(int(d) for d in decisions), float(reward)))
        if len(self.population) > self.config.population:
            self.population.popleft()  # the oldest dies, however good it was
        return None

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "population": [[list(d), r] for d, r in self.population]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.population = deque((tuple(d), float(r)) for d, r in state["population"])
