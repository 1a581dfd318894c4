"""Training state on disk: one rolling checkpoint that a killed run resumes from, and strict weight loading
that refuses weights of another architecture with a message naming the difference."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nasnet import NASNet
from ..utils.io import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that change which weights exist or their shapes; the rest (drop path, dropout, ...) may differ.
STRUCTURE_FIELDS = ("genotype", "cells_per_stack", "num_conv_filters", "stem", "stem_multiplier", "num_classes",
                    "in_chans", "skip_reduction_layer_input", "filter_scaling_rate", "num_reduction_layers")


class ArchitectureMismatchError(ValueError):
    """Weights or a checkpoint made for a different network than the one this run builds."""


def architecture(model: NASNet) -> dict[str, Any]:
    """The structural description of ``model`` that saved weights carry."""
    config = model.config_dict()
    return {k: config[k] for k in STRUCTURE_FIELDS}


def check_architecture(expected: dict[str, Any], found: dict[str, Any] | None, source: str) -> None:
    if found is None:
        return
    different = [k for k in STRUCTURE_FIELDS if k in found and found[k] != expected[k]]
    if different:
        details = "; ".join(f"{k}: file has {_short(found[k])}, this run builds {_short(expected[k])}"
                            for k in different)
        raise ArchitectureMismatchError(
            f"{source} was made for another architecture ({details}). Build the same model (same --model or "
            "--genotype/--rank, --cells-per-stack, --filters, classes) or start a fresh --output-dir.")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every weight; only the auxiliary head may be absent on one side (it is training-only)."""
    own = model.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.startswith("aux_head.")]
    unexpected = [k for k in state if k not in own and not k.startswith("aux_head.")]
    if shapes or missing or unexpected:
        parts = [f"{len(shapes)} shape mismatches ({', '.join(shapes[:3])})" if shapes else "",
                 f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else ""]
        raise ArchitectureMismatchError(f"{source} does not fit this model: "
                                        f"{'; '.join(p for p in parts if p)}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from, in types that ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, *, model: NASNet, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, ema: nn.Module | None, step: int,
                    rng_per_rank: list[dict[str, Any]]) -> None:
    """Everything needed to continue at ``step`` exactly as if the run had not stopped."""
    atomic_torch_save({
        "step": step,
        "architecture": architecture(model),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_per_rank,
    }, path)


def load_checkpoint(path: str | Path, model: NASNet) -> dict[str, Any]:
    """Read a checkpoint after checking it belongs to ``model``'s architecture; loads the model weights."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same explanation
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a training checkpoint of tools/train_cls.py (no 'model' entry)")
    check_architecture(architecture(model), state.get("architecture"), str(path))
    load_state_strict(model, state["model"], str(path))
    return state
