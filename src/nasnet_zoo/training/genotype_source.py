"""Genotypes to train, read from what the search writes: its journal, its ranked list, or one genotype file."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from ..genotypes import Genotype, GenotypeError
from ..search.journal import JOURNAL_NAME
from ..search.report import TOP_NAME, top_children
from ..utils.io import read_jsonl

# Children whose reward is a real accuracy (the search journal marks failures "nan", "timeout", "error", ...).
OK_STATUSES = frozenset({"ok", "duplicate"})


def _usable(record: dict[str, Any]) -> bool:
    """A child with a real reward: finished ('ok' or a duplicate of one) with a finite number."""
    reward = record.get("reward")
    return record.get("status", "ok") in OK_STATUSES and isinstance(reward, (int, float)) and math.isfinite(reward)


def _entry(record: dict[str, Any], where: str, rank: int) -> dict[str, Any]:
    if "genotype" not in record:
        raise GenotypeError(f"{where}: record has a reward but no 'genotype'")
    try:
        genotype = Genotype.from_dict(record["genotype"])
    except GenotypeError as err:
        raise GenotypeError(f"{where}: {err}") from None
    reward = record.get("reward")
    return {"rank": int(rank), "genotype": genotype, "reward": None if reward is None else float(reward)}


def ranked_genotypes(path: str | Path) -> list[dict[str, Any]]:
    """``[{"rank": int, "genotype": Genotype, "reward": float | None}]``: the search report's one ranking.

    Accepts ``journal.jsonl``, ``top_genotypes.json``, a single genotype JSON, or a search output folder. A
    journal (also a folder's, which holds every child) is ranked by :func:`nasnet_zoo.search.report.top_children`,
    the ranking ``top_genotypes.json`` was written with: a genotype stands at its mean reward, ranks count from 1.
    So rank 1 here is always the report's ``#1``.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / n for n in (JOURNAL_NAME, TOP_NAME) if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} holds neither {TOP_NAME} nor {JOURNAL_NAME} from a search")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"genotype file {path} does not exist")
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "genotype" not in record or "reward" not in record:
                raise GenotypeError(f"{path} line {i + 1}: a journal record needs 'genotype' and 'reward'")
        usable = [{"index": i, "status": "ok", **r} for i, r in enumerate(records) if _usable(r)]
        entries = [_entry(r, f"{path} child {r['index']}", rank) for rank, r in
                   enumerate(top_children(usable, len(usable)), start=1)]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise GenotypeError(f"{path} is not valid JSON: {err}") from None
        if isinstance(data, dict):  # one genotype, bare or inside {"genotype": ..., "reward": ...}
            return [_entry({"genotype": data.get("genotype", data), "reward": data.get("reward")}, str(path), 1)]
        if not isinstance(data, list):
            raise GenotypeError(f"{path}: expected a genotype object or a list of entries, got {type(data).__name__}")
        for i, record in enumerate(data):
            if not isinstance(record, dict):
                raise GenotypeError(f"{path}: entry {i} is a {type(record).__name__}, expected an object")
        entries = [_entry(r, f"{path} entry {i}", r.get("rank", i + 1)) for i, r in enumerate(data) if _usable(r)]
    if not entries:
        raise GenotypeError(f"{path} has no genotype with a finite reward (failed or unfinished children only?)")
    return entries


def genotype_at_rank(path: str | Path, rank: int) -> dict[str, Any]:
    """The entry at ``rank`` (1 = best, as in ``top_genotypes.json`` and the search's printed report)."""
    if rank == 0:
        warnings.warn("genotype ranks count from 1, as in top_genotypes.json (1 = best); rank 0 is read as 1",
                      FutureWarning, stacklevel=2)
        rank = 1
    entries = ranked_genotypes(path)
    if not 1 <= rank <= len(entries):
        raise ValueError(f"--rank {rank} is out of range: {path} ranks {len(entries)} distinct genotypes "
                         f"(1 = best reward, as in {TOP_NAME})")
    return entries[rank - 1]
