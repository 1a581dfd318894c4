"""Search spaces as data (NASLib / NNI habit): a strategy walks decisions, a space says what they mean.

``base`` holds the protocol every space offers and the helpers strategies use (random draws, one-decision
mutations); each space is one module; :func:`build_space` and :func:`genotype_from_dict` are the registry.
"""
from __future__ import annotations

from typing import Any

from ...genotypes import Genotype
from .base import SearchGenotype, SearchSpace, check_decisions, mutate, random_decisions
from .nasbench201 import NB201_OPS, NASBench201Cell, NASBench201Space
from .nasnet import OP_SETS, NASNetSpace

SPACES: tuple[str, ...] = ("nasnet", "nasbench201")


def build_space(name: str, num_blocks: int = 5, ops: str = "nasnet", combiners: str = "add,concat") -> SearchSpace:
    """The space called ``name`` (one of :data:`SPACES`); ``num_blocks``, ``ops`` (a name of :data:`OP_SETS` or op
    names separated by commas) and ``combiners`` shape the NASNet space, whose options they are."""
    if name == "nasnet":
        return NASNetSpace(num_blocks, ops, combiners)  # type: ignore[arg-type]
    if name == "nasbench201":
        if (ops, combiners) != ("nasnet", "add,concat"):
            raise ValueError("ops and combiners are options of the nasnet space; NAS-Bench-201's cell has its own 5 "
                             "ops: leave controller.ops and controller.combiners at their defaults")
        return NASBench201Space()
    raise ValueError(f"unknown search space {name!r}; expected one of {', '.join(SPACES)}")


def genotype_from_dict(data: dict[str, Any]) -> SearchGenotype:
    """A journaled genotype of any space, told apart by its keys (a NAS-Bench-201 cell is its ``arch``)."""
    if isinstance(data, dict) and "arch" in data:
        return NASBench201Cell.from_dict(data)
    return Genotype.from_dict(data)


__all__ = ["NB201_OPS", "OP_SETS", "NASBench201Cell", "NASBench201Space", "NASNetSpace", "SPACES", "SearchGenotype",
           "SearchSpace", "build_space", "check_decisions", "genotype_from_dict", "mutate", "random_decisions"]
