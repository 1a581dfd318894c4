"""The paper's search space (Zoph et al. 2018, section 3 and figure 3): two cells of B blocks each.

The op vocabulary and the combiners are options of the space, so a weight-sharing search can walk a smaller space
(ENAS's five ops and ``add`` only; docs/search.md measures why) while the paper's 13 ops and both combiners stay the
default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...genotypes import COMBINERS, NUM_CELL_INPUTS, OPS, Block, CellGenotype, Genotype, GenotypeError
from .base import check_decisions, random_decisions

#: The kind of each of a NASNet block's 5 decisions.
BLOCK_DECISIONS: tuple[str, ...] = ("input", "input", "op", "op", "combiner")
CELL_TYPES: tuple[str, ...] = ("normal", "reduction")

#: Named op vocabularies: the paper's 13 ops, and the 5 of ENAS's convolutional cells (Pham et al. 2018).
OP_SETS: dict[str, tuple[str, ...]] = {
    "nasnet": OPS,
    "enas": ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity"),
}


def parse_choices(value: str | Sequence[str], named: dict[str, tuple[str, ...]], valid: Sequence[str],
                  what: str) -> tuple[str, ...]:
    """A vocabulary given by name (a key of ``named``) or as names separated by commas, each checked."""
    if isinstance(value, str):
        items = named.get(value) or tuple(v.strip() for v in value.split(",") if v.strip())
    else:
        items = tuple(value)
    unknown = [v for v in items if v not in valid]
    if unknown or not items or len(set(items)) != len(items):
        options = f"{', '.join(named)} or " if named else ""
        raise ValueError(f"{what} {value!r} is not a valid choice: give {options}distinct names from "
                         f"{', '.join(valid)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return items


@dataclass(frozen=True)
class NASNetSpace:
    """The paper's space: ``num_blocks`` blocks per cell (B = 5), giving 2 x 5B decisions per child.

    Each block makes 5 decisions in this order: input A, input B, op A, op B, combiner (paper, figure 3). The
    Normal cell's B blocks come first, then the Reduction cell's. Input choices of block b are limited to the
    b + 2 states that exist when it is built; a sampled cell outputs the concatenation of its unused states.
    ``ops`` and ``combiners``: the vocabularies, a name of :data:`OP_SETS` or op names (default: the paper's).
    """

    num_blocks: int = 5
    ops: tuple[str, ...] = OPS
    combiners: tuple[str, ...] = COMBINERS
    name: str = "nasnet"
    kinds: tuple[str, ...] = ("input", "op", "combiner")

    def __post_init__(self) -> None:
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        object.__setattr__(self, "ops", parse_choices(self.ops, OP_SETS, OPS, "op set"))
        object.__setattr__(self, "combiners", parse_choices(self.combiners, {}, COMBINERS, "combiners"))

    @property
    def num_decisions(self) -> int:
        return len(CELL_TYPES) * self.num_blocks * len(BLOCK_DECISIONS)

    @property
    def max_states(self) -> int:
        """Input choices of the last block: the widest input softmax."""
        return NUM_CELL_INPUTS + self.num_blocks - 1

    def vocabulary_size(self, kind: str) -> int:
        return {"input": self.max_states, "op": len(self.ops), "combiner": len(self.combiners)}[kind]

    def step(self, t: int) -> tuple[str, int]:
        """Kind of decision ``t`` and how many of its choices are valid (inputs are masked to existing states)."""
        block = (t // len(BLOCK_DECISIONS)) % self.num_blocks
        kind = BLOCK_DECISIONS[t % len(BLOCK_DECISIONS)]
        return kind, NUM_CELL_INPUTS + block if kind == "input" else self.vocabulary_size(kind)

    def steps(self) -> list[tuple[str, int]]:
        return [self.step(t) for t in range(self.num_decisions)]

    def to_genotype(self, decisions: Sequence[int], name: str = "") -> Genotype:
        check_decisions(self, decisions)
        per_cell = self.num_blocks * len(BLOCK_DECISIONS)
        cells = []
        for c in range(len(CELL_TYPES)):
            chunk = [int(d) for d in decisions[c * per_cell:(c + 1) * per_cell]]
            blocks = tuple(
                Block(inputs=(chunk[i], chunk[i + 1]), ops=(self.ops[chunk[i + 2]], self.ops[chunk[i + 3]]),
                      combiner=self.combiners[chunk[i + 4]])
                for i in range(0, per_cell, len(BLOCK_DECISIONS)))
            cell = CellGenotype(blocks=blocks, concat=())
            cells.append(CellGenotype(blocks=blocks, concat=cell.unused_states()))
        return Genotype(normal=cells[0], reduction=cells[1], name=name)

    def to_decisions(self, genotype: Genotype) -> list[int]:
        """Inverse of ``to_genotype`` (the concat list is implied by the blocks, so it is not encoded)."""
        decisions: list[int] = []
        for cell_type in CELL_TYPES:
            cell: CellGenotype = getattr(genotype, cell_type)
            if len(cell.blocks) != self.num_blocks:
                raise GenotypeError(f"{cell_type} cell has {len(cell.blocks)} blocks; this space has "
                                    f"{self.num_blocks}")
            for block in cell.blocks:
                outside = [op for op in block.ops if op not in self.ops]
                if outside or block.combiner not in self.combiners:
                    raise GenotypeError(f"{cell_type} cell uses {', '.join(outside) or block.combiner}, outside this "
                                        f"space (ops {', '.join(self.ops)}; combiners {', '.join(self.combiners)})")
                decisions += [*block.inputs, self.ops.index(block.ops[0]), self.ops.index(block.ops[1]),
                              self.combiners.index(block.combiner)]
        return decisions

    def random_decisions(self, rng: np.random.Generator) -> list[int]:
        return random_decisions(self, rng)
