"""What every search strategy offers the runner: propose children, observe their rewards, save and restore."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..genotypes import Genotype


@dataclass(frozen=True)
class Proposal:
    """A child to evaluate: its decisions, the genotype they encode, and their log-probability when sampled."""

    decisions: tuple[int, ...]
    genotype: Genotype
    log_prob: float


class SearchStrategy(Protocol):
    name: str

    def propose(self, n: int) -> list[Proposal]:
        """``n`` new children from the current policy."""

    def observe(self, decisions: tuple[int, ...], log_prob: float, reward: float) -> dict[str, float] | None:
        """Record one finished child; return update statistics when this completed a policy update."""

    def reseed(self, seed: int) -> None:
        """Restart the sampling stream (after a resume), leaving the learned policy as it is."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
