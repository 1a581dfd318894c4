"""NAS-Bench-201's search space (Dong and Yang, ICLR 2020): one cell, 4 nodes, 6 edges, 5 ops per edge.

Node j sums one op applied to every earlier node i < j; node 3 is the cell's output. A cell is written as the
benchmark's arch string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (the group of node j lists its edges from nodes
0..j-1), and the space has 5^6 = 15,625 cells, all of them in the benchmark's table. The decisions are the 6
edge ops in arch-string order, each an index into :data:`NB201_OPS` (the benchmark's own op order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...genotypes import GenotypeError
from .base import check_decisions, random_decisions

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
#: (to node, from node) of each edge, in arch-string order.
NB201_EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))


@dataclass(frozen=True)
class NASBench201Cell:
    """One cell of the space: the op on each of the 6 edges, in arch-string order."""

    ops: tuple[str, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.ops) != len(NB201_EDGES):
            raise GenotypeError(f"a NAS-Bench-201 cell has {len(NB201_EDGES)} edge ops, got {len(self.ops)}")
        unknown = [op for op in self.ops if op not in NB201_OPS]
        if unknown:
            raise GenotypeError(f"unknown NAS-Bench-201 op(s) {unknown}; expected {', '.join(NB201_OPS)}")

    @property
    def arch(self) -> str:
        """The benchmark's arch string."""
        groups, k = [], 0
        for j in range(1, NUM_NODES):
            groups.append("|" + "|".join(f"{self.ops[k + i]}~{i}" for i in range(j)) + "|")
            k += j
        return "+".join(groups)

    @classmethod
    def from_arch(cls, arch: str, name: str = "") -> "NASBench201Cell":
        """Parse an arch string; :class:`GenotypeError` says what is wrong with a malformed one."""
        groups = arch.strip().split("+") if isinstance(arch, str) else []
        if len(groups) != NUM_NODES - 1:
            raise GenotypeError(f"{arch!r} is not a NAS-Bench-201 arch string: expected {NUM_NODES - 1} node groups "
                                "joined by '+', like |nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|...|")
        ops = []
        for j, group in enumerate(groups, start=1):
            edges = group.strip("|").split("|")
            if not (group.startswith("|") and group.endswith("|")) or len(edges) != j:
                raise GenotypeError(f"{arch!r}: node {j}'s group {group!r} should list {j} edge(s) as |op~i|")
            for i, edge in enumerate(edges):
                op, _, source = edge.partition("~")
                if source != str(i):
                    raise GenotypeError(f"{arch!r}: edge {edge!r} of node {j} should come from node {i} ('{op}~{i}')")
                ops.append(op)
        return cls(tuple(ops), name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch} if self.name else {"arch": self.arch}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NASBench201Cell":
        if not isinstance(data, dict) or "arch" not in data:
            raise GenotypeError("a NAS-Bench-201 cell is stored as {'arch': '|op~0|+...'}")
        return cls.from_arch(data["arch"], data.get("name", ""))


@dataclass(frozen=True)
class NASBench201Space:
    """The 6 edge-op decisions of a NAS-Bench-201 cell."""

    name: str = "nasbench201"
    kinds: tuple[str, ...] = ("op",)

    @property
    def num_decisions(self) -> int:
        return len(NB201_EDGES)

    def vocabulary_size(self, kind: str) -> int:
        return {"op": len(NB201_OPS)}[kind]

    def step(self, t: int) -> tuple[str, int]:
        return "op", len(NB201_OPS)

    def steps(self) -> list[tuple[str, int]]:
        return [self.step(t) for t in range(self.num_decisions)]

    def to_genotype(self, decisions: Sequence[int], name: str = "") -> NASBench201Cell:
        check_decisions(self, decisions)
        return NASBench201Cell(tuple(NB201_OPS[int(d)] for d in decisions), name)

    def to_decisions(self, genotype: NASBench201Cell) -> list[int]:
        if not isinstance(genotype, NASBench201Cell):
            raise GenotypeError(f"the nasbench201 space encodes NASBench201Cell genotypes, not "
                                f"{type(genotype).__name__}")
        return [NB201_OPS.index(op) for op in genotype.ops]

    def random_decisions(self, rng: np.random.Generator) -> list[int]:
        return random_decisions(self, rng)
