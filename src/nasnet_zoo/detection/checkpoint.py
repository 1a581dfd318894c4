"""Training checkpoints: written atomically, checked against the model before anything loads."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasnet_zoo.utils.io import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pth"
FINAL_NAME = "model_final.pth"


class CheckpointError(ValueError):
    """A checkpoint that does not belong to the model being built."""


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_identity(model_name: str, num_classes: int, categories: list[int]) -> dict[str, Any]:
    return {"model_name": model_name, "num_classes": num_classes, "categories": categories}


def save_checkpoint(path: str | Path, model: nn.Module, identity: dict[str, Any], **extra: Any) -> None:
    """Save model weights with their identity (+ optimizer, scheduler, ... in ``extra``); refuses NaN weights."""
    state = model.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"refusing to save {path}: {len(bad)} tensors hold NaN/Inf (e.g. {bad[0]}); "
                                 "the previous checkpoint is kept")
    atomic_torch_save({"model": state, **identity, **extra}, path)


def load_checkpoint(path: str | Path, model: nn.Module, identity: dict[str, Any]) -> dict[str, Any]:
    """Load weights into ``model`` after checking the checkpoint was saved from the same detector."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {err}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a train_det.py checkpoint (no 'model' entry)")
    for key in ("model_name", "num_classes", "categories"):
        if key in ckpt and ckpt[key] != identity[key]:
            raise CheckpointError(f"{path} was saved for {key}={_short(ckpt[key])}, but this run builds "
                                  f"{key}={_short(identity[key])}; pass the matching --model / dataset, or other weights")
    own = model.state_dict()
    mismatched = [k for k, v in ckpt["model"].items() if k in own and own[k].shape != v.shape]
    missing = sorted(set(own) - set(ckpt["model"]))
    unexpected = sorted(set(ckpt["model"]) - set(own))
    if mismatched or missing or unexpected:
        raise CheckpointError(f"{path} does not fit {identity['model_name']}: {len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(mismatched)} wrongly shaped tensors "
                              f"(e.g. {(missing + unexpected + mismatched)[:3]}); it is a checkpoint of another model")
    model.load_state_dict(ckpt["model"])
    return ckpt


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
