"""What every search strategy offers the runner: propose children, observe their rewards, save and restore."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .spaces import SearchGenotype


@dataclass(frozen=True)
class Proposal:
    """A child to evaluate: its decisions, the genotype they encode, and their log-probability when sampled."""

    decisions: tuple[int, ...]
    genotype: SearchGenotype
    log_prob: float


class SearchStrategy(Protocol):
    name: str
    #: Children proposed at once when evaluation is instantaneous (in-process backend): PPO samples a minibatch
    #: from one policy; evolution goes one by one so that each child sees the population its parent left.
    batch: int

    def propose(self, n: int) -> list[Proposal]:
        """``n`` new children from the current policy."""

    def observe(self, decisions: tuple[int, ...], log_prob: float, reward: float) -> dict[str, float] | None:
        """Record one finished child; return update statistics when this completed a policy update."""

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream (after a resume), leaving the learned policy as it is."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
