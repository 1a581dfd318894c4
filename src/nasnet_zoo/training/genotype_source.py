"""Genotypes to train, read from what the search writes: its journal, its ranked list, or one genotype file."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..genotypes import Genotype, GenotypeError
from ..utils.io import read_jsonl

# Children whose reward is a real accuracy (the search journal marks failures "nan", "timeout", "error", ...).
OK_STATUSES = frozenset({"ok", "duplicate"})


def _entry(record: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A ranked entry from a journal / top-list record, or None for a child that has no usable reward."""
    reward = record.get("reward")
    if record.get("status", "ok") not in OK_STATUSES or not isinstance(reward, (int, float)) \
            or not math.isfinite(reward):
        return None
    if "genotype" not in record:
        raise GenotypeError(f"{where}: record has a reward but no 'genotype'")
    try:
        genotype = Genotype.from_dict(record["genotype"])
    except GenotypeError as err:
        raise GenotypeError(f"{where}: {err}") from None
    return {"genotype": genotype, "reward": float(reward)}


def ranked_genotypes(path: str | Path) -> list[dict[str, Any]]:
    """``[{"genotype": Genotype, "reward": float | None}]``, best search reward first, duplicates merged.

    Accepts ``journal.jsonl`` (records with genotype, reward, status), ``top_genotypes.json`` (a list of entries
    with genotype and reward), a single genotype JSON, or a search output folder holding either file.
    """
    path = Path(path)
    if path.is_dir():
        # The journal holds every child; top_genotypes.json only the report's top few.
        found = [path / n for n in ("journal.jsonl", "top_genotypes.json") if (path / n).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} holds neither top_genotypes.json nor journal.jsonl from a search")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"genotype file {path} does not exist")
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise GenotypeError(f"{path} is not valid JSON: {err}") from None
        if isinstance(data, dict):  # one genotype, bare or inside {"genotype": ..., "reward": ...}
            try:
                genotype = Genotype.from_dict(data.get("genotype", data))
            except GenotypeError as err:
                raise GenotypeError(f"{path}: {err}") from None
            return [{"genotype": genotype, "reward": data.get("reward")}]
        if not isinstance(data, list):
            raise GenotypeError(f"{path}: expected a genotype object or a list of entries, got {type(data).__name__}")
        records = data
    entries: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise GenotypeError(f"{path}: entry {i} is a {type(record).__name__}, expected an object")
        entry = _entry(record, f"{path} entry {i}")
        if entry is None:
            continue
        key = json.dumps({k: v for k, v in entry["genotype"].to_dict().items() if k != "name"}, sort_keys=True)
        if key not in entries or entry["reward"] > entries[key]["reward"]:
            entries[key] = entry
    if not entries:
        raise GenotypeError(f"{path} has no genotype with a finite reward (failed or unfinished children only?)")
    return sorted(entries.values(), key=lambda e: -e["reward"])


def genotype_at_rank(path: str | Path, rank: int) -> dict[str, Any]:
    entries = ranked_genotypes(path)
    if not 0 <= rank < len(entries):
        raise ValueError(f"--rank {rank} is out of range: {path} ranks {len(entries)} distinct genotypes "
                         f"(0 = best reward)")
    return entries[rank]
