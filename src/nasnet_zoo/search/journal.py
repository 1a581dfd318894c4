"""``OUTPUT/journal.jsonl``: one durable JSON line per finished child, the search's source of truth.

The journal is append-only and fsynced per child, so a SIGKILL can lose only children still in flight. It also
serves the de-duplication cache: a genotype already in it is not trained again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..genotypes import Genotype
from ..utils.io import append_jsonl, read_jsonl

JOURNAL_NAME = "journal.jsonl"


def genotype_key(genotype: Genotype) -> str:
    """Canonical text of a genotype's structure (its name excluded): equal keys mean the same architecture."""
    return json.dumps({"normal": genotype.normal.to_dict(), "reduction": genotype.reduction.to_dict()},
                      sort_keys=True, separators=(",", ":"))


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left unfinished by a kill, so that the next append starts on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _drop_torn_tail(self.path)
        self.records: list[dict[str, Any]] = read_jsonl(self.path)
        for i, record in enumerate(self.records):
            if record.get("index") != i:
                raise ValueError(f"{self.path}: line {i + 1} has index {record.get('index')!r}, expected {i}; "
                                 "the journal was edited or two searches wrote to the same folder")
        self._by_key = {}
        for record in self.records:
            self._by_key.setdefault(genotype_key(Genotype.from_dict(record["genotype"])), record)

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The first finished child with this genotype key, if any."""
        return self._by_key.get(key)

    def append(self, record: dict[str, Any], key: str) -> dict[str, Any]:
        """Give ``record`` the next index and write it durably; returns the record as written."""
        record = {"index": len(self.records), **record}
        append_jsonl(self.path, record)
        self.records.append(record)
        self._by_key.setdefault(key, record)
        return record
