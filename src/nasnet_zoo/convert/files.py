"""Read weight files of every supported kind into (state dict, source, metadata).

Our own format is safetensors (with ``architecture`` / ``num_classes`` metadata). Foreign files: PyTorch
pickles of the Cadene / timm ports (``.pth``, ``.bin``), TF-slim variables as ``.npz``, and TF checkpoints (a
checkpoint prefix, a folder holding one, or the published ``.tar.gz`` archive), read by
:mod:`.tf_checkpoint` without TensorFlow. A file that exists but cannot be read raises
:class:`UnreadableWeightsError`, which names the file, what it should have been and the fix.
"""
from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.io import atomic_path
from . import guess_source
from .tf_checkpoint import CheckpointFormatError, TFCheckpoint

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
TF_SLOT_SUFFIXES = ("global_step", "RMSProp", "RMSProp_1", "Momentum")


class UnreadableWeightsError(ValueError):
    """A weight file is there but cannot be read (truncated, corrupt, or not what its name says)."""

    def __init__(self, path: Path, expected: str, cause: str, fix: str = "delete it and get the file again") -> None:
        self.path, self.expected, self.cause = path, expected, cause
        super().__init__(f"{path} is not a readable {expected} ({cause}): {fix}")


def read_weights_file(path: str | Path, source: str | None = None, *,
                      extract_dir: Path | None = None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Load a weight file. ``source`` is ``"ours"``, ``"cadene"``, ``"timm"`` or ``"tf"``; guessed when None.

    A ``.tar.gz`` TF archive is unpacked into ``extract_dir`` (kept there for the next load; the hub passes its
    cache) or, without one, into a temporary folder removed after reading. Nothing is written beside ``path``.
    """
    path = Path(path)
    if not path.exists() and not Path(f"{path}.index").is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if is_tf_checkpoint(path):
        return read_tf_checkpoint(path, extract_dir), "tf", {}
    name = path.name.lower()
    metadata: dict[str, str] = {}
    if name.endswith(".safetensors"):
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                state: dict[str, Any] = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
        except SafetensorError as e:
            raise UnreadableWeightsError(path, "safetensors file", str(e)) from None
    elif name.endswith(".npz"):
        try:
            with np.load(path) as data:
                state = {k: data[k] for k in data.files if not _is_fixture_extra(k)}
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as e:
            raise UnreadableWeightsError(path, ".npz archive of TF variables", str(e)) from None
    elif name.endswith(TORCH_SUFFIXES):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, zipfile.BadZipFile) as e:
            cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnreadableWeightsError(path, "PyTorch state dict (torch.save file)", cause) from None
        state = unwrap_checkpoint(loaded, path)
    else:
        raise ValueError(f"{path}: unknown weight file type; expected .safetensors (ours), .pth/.pt/.bin (Cadene or "
                         "timm), .npz (TF-slim variables) or a TF checkpoint (.tar.gz archive, prefix or folder)")
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
    return (path.name.lower().endswith(ARCHIVE_SUFFIXES) or Path(f"{path}.index").is_file()
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


def _archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def extract_archive(archive: Path, into: Path) -> Path:
    """Unpack a TF-slim ``.tar.gz`` into ``into/<name>-<sha256 prefix>/`` (once, atomically); return its prefix.

    The folder is named by the archive's content, so a changed archive is unpacked afresh and two archives of
    the same name never mix.
    """
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    target = into / f"{_archive_stem(archive)}-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        into.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=into))
        try:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(staging, filter="data")
            except (tarfile.TarError, EOFError, zlib.error) as e:
                raise UnreadableWeightsError(archive, ".tar.gz archive of a TF checkpoint", str(e) or type(e).__name__
                                             ) from None
            except OSError as e:
                if e.filename is not None:  # writing the extracted files failed: not the archive's fault
                    raise
                raise UnreadableWeightsError(archive, ".tar.gz archive of a TF checkpoint", str(e)) from None
            checkpoint_prefix(staging)  # exactly one checkpoint inside, before the folder is published
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return checkpoint_prefix(target)


def read_tf_checkpoint(path: Path, extract_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The model variables of a TF checkpoint (prefix, folder or ``.tar.gz``), by name; optimiser slots and
    ``global_step`` are left out."""
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return _read_variables(checkpoint_prefix(path), path)
    if extract_dir is not None:
        return _read_variables(extract_archive(path, extract_dir), path)
    with tempfile.TemporaryDirectory(prefix="nasnet_zoo-tf-") as scratch:
        return _read_variables(extract_archive(path, Path(scratch)), path)


def _read_variables(prefix: Path, given: Path) -> dict[str, np.ndarray]:
    try:
        checkpoint = TFCheckpoint(prefix)
        names = [n for n in checkpoint.names if n.split("/")[-1] not in TF_SLOT_SUFFIXES]
        return {n: checkpoint.read(n) for n in names}
    except CheckpointFormatError as e:
        raise UnreadableWeightsError(given, "TF checkpoint", str(e)) from None


def save_safetensors(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write our format atomically (tensors made contiguous and unshared, as safetensors requires)."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
