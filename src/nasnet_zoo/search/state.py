"""The search checkpoint: strategy state (controller, optimizer, baseline, RNG) and how much journal it has seen.

It is rewritten atomically after every policy update. On resume, journal records past ``observed`` are replayed
into the strategy, so a kill between a journal append and the next checkpoint loses nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..utils.io import atomic_torch_save

STATE_NAME = "search_state.pt"
_VERSION = 1


def save_search_state(path: str | Path, strategy_state: dict[str, Any], observed: int, resumes: int) -> None:
    atomic_torch_save({"version": _VERSION, "strategy": strategy_state, "observed": observed,
                       "resumes": resumes}, path)


def load_search_state(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != _VERSION:
        raise ValueError(f"{path} has checkpoint version {state.get('version')!r}; this code reads {_VERSION}")
    return state
