"""Checkpoints of every run (classifier training, detector training, search): one file name, one reader that
never runs code from the file, RNG state in types a weights-only load accepts, one identity check and one
weight-fitting check, each with one error wording.

Why weights-only: ``torch.load(weights_only=False)`` unpickles arbitrary objects, so a checkpoint someone hands
you (to evaluate, export or predict with) could run code. Everything saved here is tensors, numbers, strings and
plain containers. Detector checkpoints written before this module pickled NumPy's RNG state; they are read with
exactly NumPy's array-rebuilding functions allowed (they build arrays and nothing else), so they still load.
"""
from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from .io import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"
#: What ``tools/train_det.py`` called its rolling checkpoint before; resume still finds it.
LEGACY_CHECKPOINT_NAMES = ("checkpoint.pth",)
#: The only globals a legacy detector checkpoint (pickled NumPy RNG state) needs beyond torch's defaults.
_NUMPY_ARRAY_GLOBALS = ("numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct",
                        "numpy.core.multiarray._reconstruct")


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read, is unsafe, or belongs to another model."""


class ArchitectureMismatchError(CheckpointError):
    """Weights or a checkpoint made for another network than the one this run builds."""


def find_checkpoint(folder: str | Path) -> Path | None:
    """The run folder's rolling checkpoint (current name first, then names older versions wrote)."""
    for name in (CHECKPOINT_NAME, *LEGACY_CHECKPOINT_NAMES):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


# ---- RNG state ----------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every RNG a training step draws from (Python, NumPy, torch, CUDA), in weights-only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`'s output (NumPy keys as a tensor, or as the array legacy checkpoints hold)."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- reading and writing ------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (with a ``"model"`` state dict) atomically; refuses NaN/Inf weights.

    A refused or failed write (a full disk included) leaves the previous checkpoint at ``path`` intact.
    """
    bad = [k for k, v in state.get("model", {}).items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"refusing to save {path}: {len(bad)} tensors hold NaN/Inf (e.g. {bad[0]}); "
                                 "the previous checkpoint is kept")
    atomic_torch_save(state, path)


def read_checkpoint(path: str | Path, *, written_by: str = "") -> dict[str, Any]:
    """Load a checkpoint file without running code from it; ``written_by`` names the tool for messages.

    A file that needs other Python objects is refused with :class:`CheckpointError` (nothing of it runs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        loaded = _read_legacy(path)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise _unreadable(path, err) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a checkpoint dict"
                              + (f" of {written_by}" if written_by else ""))
    return loaded


def _read_legacy(path: Path) -> Any:
    """Older detector checkpoints: allow NumPy's array rebuilding and nothing else, or refuse the file."""
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as err:  # noqa: BLE001 - not even a readable archive
        raise _unreadable(path, err) from None
    foreign = sorted(needed - set(_NUMPY_ARRAY_GLOBALS))
    if foreign:
        raise CheckpointError(
            f"refused to load {path}: it holds Python objects ({', '.join(foreign[:5])}) that loading would have to "
            "construct, and unpickling them can run code. Checkpoints of this project hold only tensors, numbers, "
            "strings and containers. If you trust the file's origin, re-save its tensors in a trusted Python session "
            "(torch.save({'model': state_dict}, NEW)), then load NEW")
    allowed = [_numpy_global(name) for name in sorted(needed)]
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]  # rebuilt by the arrays' dtypes
    try:
        with torch.serialization.safe_globals([g for g in allowed if g is not None] + dtypes):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise _unreadable(path, err) from None


def _numpy_global(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[attr]), attr)
    except (ImportError, AttributeError):
        return None


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint (damaged, truncated or of another format: "
                           f"{_first_line(err)})")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


# ---- identity and fitting -----------------------------------------------------------------------------------
def saved_identity(checkpoint: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """The identity a checkpoint was saved with: a classifier's "architecture" entry, else the top-level entries
    named by the ``expected`` identity (a detector's). Each identity's schema belongs to its model's owner:
    ``nasnet.nasnet_identity``, ``detection.modeling.builders.detector_identity``."""
    if isinstance(checkpoint.get("architecture"), dict):
        return dict(checkpoint["architecture"])
    return {k: checkpoint[k] for k in expected if k in checkpoint}


def check_identity(expected: Mapping[str, Any], found: Mapping[str, Any] | None, source: str) -> None:
    """Raise :class:`ArchitectureMismatchError` naming every field where ``found`` differs from ``expected``."""
    if not found:
        return
    different = [k for k in expected if k in found and found[k] != expected[k]]
    if different:
        details = "; ".join(f"{k}: file has {_short(found[k])}, this run builds {_short(expected[k])}"
                            for k in different)
        raise ArchitectureMismatchError(
            f"{source} was made for another model ({details}). Build the same model (same --model or "
            "--genotype/--rank, --cells-per-stack, --num-conv-filters, classes) or start a fresh --output-dir.")


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, target: str = "this model",
                   optional: tuple[str, ...] = (), allow_unexpected: bool = False,
                   hint: str | Callable[[], str] = "") -> dict[str, torch.Tensor]:
    """The part of ``state`` to load into ``model``, after checking that every tensor fits.

    Keys under an ``optional`` prefix may be absent on either side (and are not loaded if their shape differs);
    a missing BatchNorm ``num_batches_tracked`` counter is fine; with ``allow_unexpected`` the file may hold more
    than the model (a classifier's weights for a backbone). Anything else that is missing, unexpected or of
    another shape raises :class:`ArchitectureMismatchError`, worded the same for every loader:
    ``SOURCE does not fit TARGET[; HINT]: N missing (e.g. ...), N unexpected (...), N of another shape (...)``.
    ``hint`` may be a function, called only when the weights do not fit.
    """
    own = model.state_dict()
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape) and not k.startswith(optional)]
    missing = [k for k in own if k not in state and not k.startswith(optional)
               and not k.endswith("num_batches_tracked")]
    unexpected = [] if allow_unexpected else [k for k in state if k not in own and not k.startswith(optional)]
    if shapes or missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})" if shapes else ""]
        note = hint() if callable(hint) else hint
        raise ArchitectureMismatchError(f"{source} does not fit {target}{'; ' + note if note else ''}: "
                                        f"{', '.join(p for p in parts if p)}")
    return {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}


def load_checkpoint(path: str | Path, model: nn.Module, identity: Mapping[str, Any], *, written_by: str,
                    optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read ``path``, check it was saved for ``identity`` and load its weights into ``model``; returns it all."""
    checkpoint = read_checkpoint(path, written_by=written_by)
    apply_checkpoint(checkpoint, model, identity, source=str(path), written_by=written_by, optional=optional)
    return checkpoint


def apply_checkpoint(checkpoint: Mapping[str, Any], model: nn.Module, identity: Mapping[str, Any], *, source: str,
                     written_by: str, optional: tuple[str, ...] = ()) -> None:
    """:func:`load_checkpoint` for a checkpoint already read (``source`` names it), so it is read only once."""
    if not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(f"{source} is not a {written_by} checkpoint (no 'model' entry)")
    check_identity(identity, saved_identity(checkpoint, identity), source)
    model.load_state_dict(fit_state_dict(model, checkpoint["model"], source=source, optional=optional),
                          strict=False)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) < 60 else text[:57] + "..."


#: Identity schemas that lived here before they moved to their models' owners: old imports keep working.
