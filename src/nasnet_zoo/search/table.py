"""The benchmark-table reward: a child's "training" is a lookup of the accuracy real training gave it.

NAS-Bench-201 trained every cell of its space on CIFAR-10 (the table ships in ``search/tables/``, with its
attribution). A search queries the reward column (by default the 200-epoch validation accuracy) and is judged on
a second column it never sees (the 200-epoch test accuracy), as the benchmark's authors report: picked on
validation, reported on test. Any CSV of the same shape (``index``, ``arch`` and numeric columns covering every
cell of the space) can be given instead. The CSV is read with the standard library's ``csv`` module: a 2 MB
table needs no pandas.
"""
from __future__ import annotations

import csv
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..genotypes import GenotypeError
from .rewards import ChildResult
from .spaces import NASBench201Cell, SearchSpace

#: The NAS-Bench-201 CIFAR-10 table shipped in the package (README.md beside it gives columns and provenance).
NASBENCH201_CIFAR10 = Path(__file__).with_name("tables") / "nasbench201_cifar10.csv"


class TableError(ValueError):
    """A benchmark table that cannot serve as a reward; the message names the file and the row or column."""


@dataclass
class TableConfig:
    path: str = ""                               # "" = the shipped NAS-Bench-201 CIFAR-10 table
    reward_column: str = "cifar10_valid_200ep"   # what the search sees
    test_column: str = "cifar10_test_200ep"      # what the report gives for the cells it found

    def resolved_path(self) -> Path:
        return Path(self.path) if self.path else NASBENCH201_CIFAR10


class BenchmarkTable:
    """Every cell of a space with its measured columns, checked whole before any query."""

    def __init__(self, path: str | Path, space: SearchSpace, columns: tuple[str, ...]) -> None:
        self.path = Path(path)
        if space.name != "nasbench201":
            raise TableError(f"benchmark tables hold NAS-Bench-201 arch strings; the {space.name} space has none: "
                             "use --space nasbench201 (or another reward)")
        if not self.path.is_file():
            raise TableError(f"benchmark table {self.path} does not exist")
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in ("index", "arch", *columns) if c not in header]
            if missing:
                raise TableError(f"{self.path}: no column {', '.join(map(repr, missing))}; its columns are "
                                 f"{', '.join(header) or '(none)'}")
            rows = list(reader)
        self.columns = columns
        self._row: dict[tuple[int, ...], int] = {}
        self.index = np.empty(len(rows), dtype=np.int64)
        self.values = {c: np.empty(len(rows)) for c in columns}
        self.arches: list[str] = []
        for i, row in enumerate(rows):
            where = f"{self.path}, row {i + 2}"  # line number in the file, the header being line 1
            try:
                cell = NASBench201Cell.from_arch(row["arch"])
            except GenotypeError as err:
                raise TableError(f"{where}: arch is not in the {space.name} space: {err}") from None
            key = tuple(space.to_decisions(cell))
            if key in self._row:
                raise TableError(f"{where}: arch {row['arch']} is a duplicate of row {self._row[key] + 2}")
            self._row[key] = i
            self.arches.append(cell.arch)
            for c in ("index", *columns):
                try:
                    value = float(row[c])
                except (TypeError, ValueError):
                    raise TableError(f"{where}: column {c!r} holds {row[c]!r}, not a number") from None
                if not math.isfinite(value):
                    raise TableError(f"{where}: column {c!r} holds {row[c]!r}, not a finite number")
                if c == "index":
                    self.index[i] = int(value)
                else:
                    self.values[c][i] = value
        size = int(np.prod([valid for _, valid in space.steps()]))
        if len(rows) != size:
            raise TableError(f"{self.path}: {len(rows)} distinct cells, but the {space.name} space has {size}; a "
                             "table must cover the whole space")
        self.space = space

    def __len__(self) -> int:
        return len(self.arches)

    def row(self, genotype: NASBench201Cell) -> int:
        return self._row[tuple(self.space.to_decisions(genotype))]

    def best(self, column: str) -> int:
        """The row with the highest value of ``column`` (the first such row on ties)."""
        return int(np.argmax(self.values[column]))


class TableReward:
    """The reward column's value for a child, with the test column and the table index in ``info``."""

    def __init__(self, table: BenchmarkTable, reward_column: str, test_column: str) -> None:
        self.table = table
        self.reward_column = reward_column
        self.test_column = test_column

    def __call__(self, genotype: NASBench201Cell, seed: int = 0, device: str = "cpu") -> ChildResult:
        start = time.perf_counter()
        i = self.table.row(genotype)
        info: dict[str, Any] = {self.test_column: float(self.table.values[self.test_column][i]),
                                "table_index": int(self.table.index[i])}
        return ChildResult(reward=float(self.table.values[self.reward_column][i]),
                           seconds=time.perf_counter() - start, info=info)


@functools.lru_cache(maxsize=4)
def _cached_table(path: Path, mtime_ns: int, space: SearchSpace, columns: tuple[str, ...]) -> BenchmarkTable:
    return BenchmarkTable(path, space, columns)


def load_table_reward(config: TableConfig, space: SearchSpace) -> TableReward:
    """The reward ``config`` describes; a table is read and checked once per process (a benchmark of hundreds
    of searches, and the validation before each search, share it) and again only when its file changes."""
    path = config.resolved_path()
    columns = tuple(dict.fromkeys((config.reward_column, config.test_column)))
    mtime = path.stat().st_mtime_ns if path.is_file() else -1
    return TableReward(_cached_table(path.resolve(), mtime, space, columns), config.reward_column, config.test_column)
