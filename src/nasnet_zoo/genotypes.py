"""The NASNet search space as data: ops, blocks, cells and genotypes.

A genotype is what the controller samples and what the network builder consumes. It is stored as JSON
(never as a Python repr) so that searched cells travel between machines and tools safely.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

#: The 13 operations of the NASNet search space (paper, section 3), in the controller's vocabulary order.
OPS: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)

#: How a block merges its two op outputs.
COMBINERS: tuple[str, ...] = ("add", "concat")

#: Number of cell inputs every block may read: index 0 is h_i (this cell's input), 1 is h_{i-1}.
NUM_CELL_INPUTS = 2


class GenotypeError(ValueError):
    """A genotype that does not describe a valid NASNet cell."""


def _closest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


@dataclass(frozen=True)
class Block:
    """One block: two (input, op) pairs merged by a combiner."""

    inputs: tuple[int, int]
    ops: tuple[str, str]
    combiner: str = "add"

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "ops": list(self.ops), "combiner": self.combiner}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Block":
        unknown = set(data) - {"inputs", "ops", "combiner"}
        if unknown:
            raise GenotypeError(f"block has unknown keys {sorted(unknown)}; expected 'inputs', 'ops', 'combiner'")
        try:
            inputs, ops = tuple(data["inputs"]), tuple(data["ops"])
        except KeyError as err:
            raise GenotypeError(f"block is missing the key {err}; expected 'inputs', 'ops' and optional 'combiner'") from None
        return cls(inputs=inputs, ops=ops, combiner=data.get("combiner", "add"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class CellGenotype:
    """A cell: blocks in order, and the hidden states concatenated into its output.

    State indices: 0 = h_i, 1 = h_{i-1}, k >= 2 = output of block k - 2.
    """

    blocks: tuple[Block, ...]
    concat: tuple[int, ...]

    @property
    def num_states(self) -> int:
        return NUM_CELL_INPUTS + len(self.blocks)

    def validate(self, where: str = "cell") -> None:
        if not self.blocks:
            raise GenotypeError(f"{where}: a cell needs at least one block")
        for b, block in enumerate(self.blocks):
            here = f"{where} block {b}"
            if len(block.inputs) != 2 or len(block.ops) != 2:
                raise GenotypeError(f"{here}: needs exactly two inputs and two ops, got {list(block.inputs)} and {list(block.ops)}")
            for op in block.ops:
                if op not in OPS:
                    raise GenotypeError(f"{here}: unknown op {op!r}{_closest(str(op), OPS)}; valid ops: {', '.join(OPS)}")
            available = NUM_CELL_INPUTS + b
            for idx in block.inputs:
                if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < available:
                    raise GenotypeError(
                        f"{here}: input index {idx!r} out of range; block {b} may read states 0..{available - 1} "
                        "(0 = h_i, 1 = h_{i-1}, k >= 2 = block k-2)"
                    )
            if block.combiner not in COMBINERS:
                raise GenotypeError(f"{here}: unknown combiner {block.combiner!r}; expected one of {list(COMBINERS)}")
        if not self.concat:
            raise GenotypeError(f"{where}: concat is empty; list the states that form the cell output")
        for idx in self.concat:
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < self.num_states:
                raise GenotypeError(f"{where}: concat index {idx!r} out of range 0..{self.num_states - 1}")
        if len(set(self.concat)) != len(self.concat):
            raise GenotypeError(f"{where}: concat lists a state twice: {list(self.concat)}")

    def unused_states(self) -> tuple[int, ...]:
        """States no block reads: the NASNet rule for a sampled cell's output (inputs excluded)."""
        used = {i for block in self.blocks for i in block.inputs}
        return tuple(i for i in range(NUM_CELL_INPUTS, self.num_states) if i not in used)

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": [b.to_dict() for b in self.blocks], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "cell") -> "CellGenotype":
        if not isinstance(data, dict) or "blocks" not in data:
            raise GenotypeError(f"{where}: expected an object with 'blocks' and 'concat'")
        blocks = tuple(Block.from_dict(b) for b in data["blocks"])
        concat = data.get("concat")
        cell = cls(blocks=blocks, concat=tuple(concat) if concat is not None else ())
        if concat is None:
            cell = cls(blocks=blocks, concat=cell.unused_states())
        cell.validate(where)
        return cell

    @classmethod
    def from_lists(cls, ops: Sequence[str], inputs: Sequence[int], concat: Sequence[int] | None = None,
                   combiners: Sequence[str] | None = None) -> "CellGenotype":
        """Build from TF-slim style flat lists (two entries per block)."""
        if len(ops) != len(inputs) or len(ops) % 2:
            raise GenotypeError(f"ops and inputs need the same even length, got {len(ops)} and {len(inputs)}")
        n = len(ops) // 2
        combiners = combiners or ["add"] * n
        blocks = tuple(
            Block(inputs=(inputs[2 * b], inputs[2 * b + 1]), ops=(ops[2 * b], ops[2 * b + 1]), combiner=combiners[b])
            for b in range(n)
        )
        cell = cls(blocks=blocks, concat=tuple(concat) if concat is not None else ())
        if concat is None:
            cell = cls(blocks=blocks, concat=cell.unused_states())
        cell.validate()
        return cell


@dataclass(frozen=True)
class Genotype:
    """A Normal cell and a Reduction cell: everything that defines a NASNet architecture family."""

    normal: CellGenotype
    reduction: CellGenotype
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.normal.validate("normal cell")
        self.reduction.validate("reduction cell")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"normal": self.normal.to_dict(), "reduction": self.reduction.to_dict()}
        if self.name:
            out = {"name": self.name, **out}
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Genotype":
        if not isinstance(data, dict):
            raise GenotypeError(f"a genotype is a JSON object with 'normal' and 'reduction', got {type(data).__name__}")
        missing = {"normal", "reduction"} - set(data)
        if missing:
            raise GenotypeError(f"genotype is missing {sorted(missing)}; expected keys 'normal' and 'reduction'")
        return cls(
            normal=CellGenotype.from_dict(data["normal"], "normal cell"),
            reduction=CellGenotype.from_dict(data["reduction"], "reduction cell"),
            name=str(data.get("name", "")),
        )

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise GenotypeError(f"genotype is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str) -> "Genotype":
        """Read a genotype JSON file (a bare genotype, or an object with a 'genotype' key)."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and "genotype" in data:
            data = data["genotype"]
        return cls.from_dict(data)


# NASNet-A exactly as published (TF-slim nasnet_utils.py; see REFERENCE: the concat lists are fixed, not derived).
NASNET_A = Genotype(
    name="NASNet-A",
    normal=CellGenotype.from_lists(
        ops=["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
             "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"],
        inputs=[0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
        concat=[1, 2, 3, 4, 5, 6],
    ),
    reduction=CellGenotype.from_lists(
        ops=["sep_conv_5x5", "sep_conv_7x7", "max_pool_3x3", "sep_conv_7x7", "avg_pool_3x3",
             "sep_conv_5x5", "identity", "avg_pool_3x3", "sep_conv_3x3", "max_pool_3x3"],
        inputs=[0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
        concat=[3, 4, 5, 6],
    ),
)
