"""What every search space offers: decisions with their valid choices, and genotypes to and from them.

A space lists its decisions: ``steps()`` gives each decision's kind and how many choices are valid at it
(choices ``0 .. valid - 1``; the controller masks the rest). It turns decisions into a genotype and back. The
controller, PPO, random search and evolution see only this protocol and the helpers below.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from ...genotypes import GenotypeError


class SearchGenotype(Protocol):
    """What the search machinery needs of a genotype: its JSON form (``name`` is not part of its identity)."""

    name: str

    def to_dict(self) -> dict[str, Any]: ...


class SearchSpace(Protocol):
    """A search space as data, for any strategy."""

    name: str
    #: The kinds of decision, in the controller's embedding order; each has its own vocabulary.
    kinds: tuple[str, ...]

    @property
    def num_decisions(self) -> int: ...

    def vocabulary_size(self, kind: str) -> int: ...

    def step(self, t: int) -> tuple[str, int]: ...

    def steps(self) -> list[tuple[str, int]]: ...

    def to_genotype(self, decisions: Sequence[int], name: str = "") -> SearchGenotype: ...

    def to_decisions(self, genotype: Any) -> list[int]: ...

    def random_decisions(self, rng: np.random.Generator) -> list[int]: ...


def random_decisions(space: SearchSpace, rng: np.random.Generator) -> list[int]:
    """One uniformly random valid decision sequence."""
    return [int(rng.integers(valid)) for _, valid in space.steps()]


def mutate(space: SearchSpace, decisions: Sequence[int], rng: np.random.Generator) -> list[int]:
    """Change one decision to another of its valid choices (Real et al. 2019): the result is a valid child.

    Validity of a choice depends only on its position in both spaces, so any single change stays valid.
    """
    steps = space.steps()
    free = [t for t, (_, valid) in enumerate(steps) if valid > 1]
    t = free[int(rng.integers(len(free)))]
    new = int(rng.integers(steps[t][1] - 1))
    out = [int(d) for d in decisions]
    out[t] = new + (new >= out[t])  # any valid choice but the current one
    return out


def check_decisions(space: SearchSpace, decisions: Sequence[int]) -> None:
    """Raise :class:`GenotypeError` unless ``decisions`` is a complete valid sequence of ``space``."""
    if len(decisions) != space.num_decisions:
        raise GenotypeError(f"expected {space.num_decisions} decisions in the {space.name} space, got {len(decisions)}")
    for t, d in enumerate(decisions):
        kind, valid = space.step(t)
        if not 0 <= int(d) < valid:
            raise GenotypeError(f"decision {t} ({kind}) is {d}; valid choices are 0..{valid - 1}")


