"""``OUTPUT/journal.jsonl``: one durable JSON line per finished child, the search's source of truth.

The journal is append-only and fsynced per child, so a SIGKILL can lose only children still in flight. It also
serves the de-duplication cache: a genotype already in it is not trained again. A torn last line (a kill
mid-write) is cut on open; a damaged line anywhere else stops the search with the repair command
(:func:`repair_journal`, ``tools/search.py --output-dir X --repair-journal``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.io import JsonlLineError, append_jsonl, atomic_write_text, read_jsonl
from .rewards import ChildResult
from .spaces import SearchGenotype, genotype_from_dict
from .state import STATE_NAME, SearchStateError, load_search_state
from .strategy import Proposal

JOURNAL_NAME = "journal.jsonl"
REJECTED_NAME = "journal.rejected.jsonl"
#: Fields every journal record needs for the report, the de-duplication cache and a replay of the policy.
REQUIRED_FIELDS = ("genotype", "reward", "decisions", "log_prob")


class JournalError(ValueError):
    """A journal that cannot be read as it is; the message names the line and the repair command."""


def repair_command(folder: Path) -> str:
    return f"python tools/search.py --output-dir {folder} --repair-journal"


def child_record(proposal: Proposal, result: ChildResult, *, strategy: str, worker: str, attempts: int,
                 session: int) -> dict[str, Any]:
    """The journal line of one evaluated child, for every kind of search (``Journal.append`` adds the index)."""
    return {"genotype": proposal.genotype.to_dict(), "reward": result.reward, "status": result.status,
            "reason": result.reason, "seconds": round(result.seconds, 4), "strategy": strategy,
            "decisions": list(proposal.decisions), "log_prob": proposal.log_prob, "worker": worker,
            "attempts": attempts, "info": result.info, "time": time.time(), "session": session}


def genotype_key(genotype: SearchGenotype | dict[str, Any]) -> str:
    """Canonical text of a genotype's structure (its name excluded): equal keys mean the same architecture.

    Takes a genotype of any space or its journaled dict (decoded first, so that a key is always canonical).
    """
    if isinstance(genotype, dict):
        genotype = genotype_from_dict(genotype)
    return json.dumps({k: v for k, v in genotype.to_dict().items() if k != "name"}, sort_keys=True,
                      separators=(",", ":"))


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
    """The search's record of finished children, one JSON line each; ``write=False`` (torchrun ranks other than
    0) reads it and keeps new records in memory only, so there is one writer."""

    def __init__(self, path: str | Path, *, write: bool = True) -> None:
        self.path, self.write = Path(path), write
        if write:
            _drop_torn_tail(self.path)
        fix = (f"repair it with `{repair_command(self.path.parent)}` (bad lines move to {REJECTED_NAME}, every "
               "good line is kept), then --resume")
        try:
            self.records: list[dict[str, Any]] = read_jsonl(self.path)
        except JsonlLineError as err:
            raise JournalError(f"{self.path}: line {err.line} is not valid JSON; {fix}") from None
        for i, record in enumerate(self.records):
            if not isinstance(record, dict) or record.get("index") != i:
                found = record.get("index") if isinstance(record, dict) else type(record).__name__
                raise JournalError(f"{self.path}: line {i + 1} has index {found!r}, expected {i} (the journal was "
                                   f"edited or two searches wrote to the same folder); {fix}")
        self._by_key = {}
        for record in self.records:
            self._by_key.setdefault(genotype_key(record["genotype"]), record)

    def __len__(self) -> int:
        return len(self.records)

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The first finished child with this genotype key, if any."""
        return self._by_key.get(key)

    def append(self, record: dict[str, Any], key: str) -> dict[str, Any]:
        """Give ``record`` the next index and write it durably; returns the record as written."""
        record = {"index": len(self.records), **record}
        if self.write:
            append_jsonl(self.path, record)
        self.records.append(record)
        self._by_key.setdefault(key, record)
        return record


@dataclass
class RepairReport:
    kept: int
    rejected: list[int]  # 1-based line numbers moved to journal.rejected.jsonl
    renumbered: bool     # indices were rewritten to 0..kept-1 (lines were removed or indices were off)


def _problem(line: str) -> str | None:
    """Why a journal line cannot be kept, or None for a good record."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err.msg} at column {err.colno})"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    try:
        genotype_from_dict(record["genotype"])
    except (TypeError, ValueError, KeyError) as err:
        return f"holds no valid genotype ({err})"
    return None


def repair_journal(folder: str | Path) -> RepairReport:
    """Move the journal's bad lines to ``journal.rejected.jsonl`` and keep every good one, renumbered in order.

    The rejected lines are appended (with their line number and the reason) and made durable before the journal
    is rewritten atomically, so a crash in between loses nothing. When good records had to be renumbered (a
    child's line was lost), the search checkpoint no longer describes the journal: it is moved aside
    (``search_state.pt.before-repair``) so that ``--resume`` rebuilds the strategy state from the repaired journal.
    """
    folder = Path(folder)
    path = folder / JOURNAL_NAME
    if not path.is_file():
        raise JournalError(f"{path} does not exist: nothing to repair")
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            rejected.append({"line": number, "reason": "not UTF-8 text", "text": raw.decode("utf-8", "replace")})
            continue
        if not line.strip():
            continue
        problem = _problem(line)
        if problem:
            rejected.append({"line": number, "reason": problem, "text": line})
        else:
            kept.append(json.loads(line))
    new_index: dict[int, int] = {}
    for i, record in enumerate(kept):
        new_index.setdefault(record.get("index", i), i)
    renumbered = any(record.get("index") != i for i, record in enumerate(kept))
    for i, record in enumerate(kept):
        record["index"] = i
        if "duplicate_of" in record:
            if record["duplicate_of"] in new_index and new_index[record["duplicate_of"]] < i:
                record["duplicate_of"] = new_index[record["duplicate_of"]]
            else:  # the first evaluation was rejected: this record, with its copied reward, stands alone
                record.pop("duplicate_of")
    if rejected:
        for entry in rejected:
            append_jsonl(folder / REJECTED_NAME, entry)
    if rejected or renumbered:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    state = folder / STATE_NAME
    try:
        observed = (load_search_state(state) or {}).get("observed", 0)
    except SearchStateError:
        observed = 0  # unusable anyway: --resume rebuilds it
    if renumbered or observed > len(kept):
        os.replace(state, folder / f"{STATE_NAME}.before-repair")
    return RepairReport(len(kept), [r["line"] for r in rejected], renumbered)
