"""Read weight files of every supported kind into (state dict, source, metadata).

Our own format is safetensors (with ``architecture`` / ``num_classes`` metadata). Foreign files: PyTorch
pickles of the Cadene / timm ports (``.pth``), TF-slim variables as ``.npz``, and TF checkpoints (a
checkpoint prefix, a folder holding one, or the published ``.tar.gz`` archive), which need TensorFlow.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.io import atomic_path
from . import guess_source

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
TF_SLOT_SUFFIXES = ("global_step", "RMSProp", "RMSProp_1", "Momentum")
TF_INSTALL_HINT = "pip install 'nasnet-zoo[tf]' (TensorFlow), or convert the variables to .npz on a machine that has it"


def read_weights_file(path: str | Path, source: str | None = None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Load a weight file. ``source`` is ``"ours"``, ``"cadene"``, ``"timm"`` or ``"tf"``; guessed when None."""
    path = Path(path)
    if not path.exists() and not Path(f"{path}.index").is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if is_tf_checkpoint(path):
        return read_tf_checkpoint(path), "tf", {}
    name = path.name.lower()
    metadata: dict[str, str] = {}
    if name.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        state: dict[str, Any] = load_file(str(path))
    elif name.endswith(".npz"):
        with np.load(path) as data:
            state = {k: data[k] for k in data.files if not _is_fixture_extra(k)}
    elif name.endswith(TORCH_SUFFIXES):
        state = unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=True), path)
    else:
        raise ValueError(f"{path}: unknown weight file type; expected .safetensors (ours), .pth/.pt (Cadene or timm), "
                         ".npz (TF-slim variables) or a TF checkpoint (.tar.gz archive, prefix or folder)")
    return state, source or guess_source(state), metadata


def _is_fixture_extra(key: str) -> bool:
    """npz files from the TF-slim fixture also hold inputs and end points beside the ``var/`` variables."""
    return key in ("input", "logits") or key.startswith("endpoint/")


def unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Training checkpoints nest the weights under ``state_dict`` or ``model``; return the weights."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return obj


def is_tf_checkpoint(path: Path) -> bool:
    name = path.name
    return (name.endswith((".tar.gz", ".tgz")) or Path(f"{path}.index").is_file()
            or (path.is_dir() and any(path.glob("*.index"))))


def checkpoint_prefix(path: Path) -> Path:
    """The checkpoint prefix (``.../model.ckpt``) of a prefix, a folder, or an extracted archive folder."""
    if Path(f"{path}.index").is_file():
        return path
    if path.is_dir():
        indexes = sorted(path.rglob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        raise ValueError(f"{path}: expected exactly one TF checkpoint (*.index) inside, found {len(indexes)}")
    raise FileNotFoundError(f"{path}: no TF checkpoint here (expected {path}.index or a folder holding one)")


def extract_archive(archive: Path) -> Path:
    """Unpack a TF-slim ``.tar.gz`` beside itself (once; atomically) and return the checkpoint prefix."""
    target = archive.with_name(archive.name.removesuffix(".tar.gz").removesuffix(".tgz"))
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=archive.parent))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            staging.rename(target)
        except tarfile.TarError as e:
            raise ValueError(f"{archive}: not a readable .tar.gz archive ({e}); download it again") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return checkpoint_prefix(target)


def read_tf_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint by name (needs TensorFlow; imported only here)."""
    prefix = extract_archive(path) if path.name.endswith((".tar.gz", ".tgz")) else checkpoint_prefix(path)
    try:
        import tensorflow as tf  # noqa: PLC0415  (optional dependency)
    except ImportError:
        raise ImportError(f"reading the TF checkpoint {prefix} needs TensorFlow: {TF_INSTALL_HINT}") from None
    reader = tf.train.load_checkpoint(str(prefix))
    names = [n for n in reader.get_variable_to_shape_map() if n.split("/")[-1] not in TF_SLOT_SUFFIXES]
    return {n: np.asarray(reader.get_tensor(n)) for n in sorted(names)}


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write our format atomically (tensors made contiguous and unshared, as safetensors requires)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
