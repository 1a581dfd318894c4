"""The search checkpoint: strategy state (controller, optimizer, baseline, RNG), how much journal it has seen and,
for a shared-weight search, the evaluator's state (supernet weights, momentum, counters).

It is rewritten atomically after a policy update (at most every ``runner.STATE_PERIOD_S`` seconds) and at the end. On resume, journal records past ``observed`` are replayed
into the strategy, so a kill between a journal append and the next checkpoint loses nothing. The checkpoint is a
cache of the journal: when it is missing or unreadable, :func:`rebuild_search_state` replays every journaled
child, in journal order, into a fresh strategy built from the run's seed and config. The policy updates depend
only on each child's decisions, sampling log-probability and reward, all journaled exactly (JSON floats round
trip), so the replay reproduces the controller, its Adam state, the baseline and the update count exactly.
Only the sampling stream is not replayed: every resume reseeds it anyway. Shared weights cannot be replayed, so
the previous checkpoint is kept (``search_state.prev.pt``) and read when the newest one is damaged.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..utils.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .strategy import SearchStrategy

STATE_NAME = "search_state.pt"
PREVIOUS_STATE_NAME = "search_state.prev.pt"
_VERSION = 1


class SearchStateError(ValueError):
    """A search checkpoint that cannot be read or was written by another version of this code."""


def save_search_state(path: str | Path, strategy_state: dict[str, Any], observed: int, resumes: int,
                      evaluator: dict[str, Any] | None = None) -> None:
    """Write atomically; with an ``evaluator`` state the current file is kept as the previous one first."""
    path = Path(path)
    state = {"version": _VERSION, "strategy": strategy_state, "observed": observed, "resumes": resumes}
    if evaluator is not None:
        state["evaluator"] = evaluator
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS_STATE_NAME))
    save_checkpoint(path, state)


def _read(path: Path) -> dict[str, Any]:
    try:
        state = read_checkpoint(path, written_by="tools/search.py")  # weights only: nothing in it can run
    except CheckpointError as err:
        raise SearchStateError(str(err)) from None
    if state.get("version") != _VERSION:
        raise SearchStateError(f"{path} has checkpoint version {state.get('version')!r}; this code reads {_VERSION}")
    return state


def load_search_state(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (or, when that is damaged, the previous one, with a warning); None when there
    is none; :class:`SearchStateError` when it is unusable."""
    path = Path(path)
    previous = path.with_name(PREVIOUS_STATE_NAME)
    if not path.exists():
        return _read(previous) if previous.exists() else None
    try:
        return _read(path)
    except SearchStateError as err:
        if not previous.exists():
            raise
        warnings.warn(f"{err}; trying the previous checkpoint {previous}")
        return _read(previous)


def rebuild_search_state(strategy: SearchStrategy, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay ``records`` (the journal, in order) into ``strategy``, fresh from the run's seed and config.

    Returns a state like the one :func:`load_search_state` reads, plus ``updates``: the policy updates replayed.
    One intra-op thread, as the live search runs its controller, so that every update is bitwise the same.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    updates = 0
    try:
        for record in records:
            stats = strategy.observe(tuple(record["decisions"]), record["log_prob"], record["reward"])
            updates += stats is not None
    finally:
        torch.set_num_threads(threads)
    sessions = [int(r["session"]) for r in records if "session" in r]
    return {"version": _VERSION, "strategy": strategy.state_dict(), "observed": len(records),
            "resumes": max(sessions, default=0), "updates": updates}
