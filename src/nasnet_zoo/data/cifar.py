"""CIFAR-10 from the official python-pickle layout (``cifar-10-batches-py``).

The batches are pickles, so they are read with an unpickler that builds only NumPy arrays and plain
containers: a crafted batch file cannot run code (the format itself needs nothing else).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CifarLayoutError(ValueError):
    """A folder that is not CIFAR-10's python-pickle layout."""


def check_cifar_dir(path: str | Path) -> Path:
    """Return the folder holding the batches, accepting its parent too; explain what is missing otherwise."""
    path = Path(path)
    if not path.exists():
        raise CifarLayoutError(f"CIFAR-10 folder {path} does not exist")
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    missing = [f for f in TRAIN_FILES + [TEST_FILE] if not (path / f).is_file()]
    if missing:
        raise CifarLayoutError(
            f"{path} is not the CIFAR-10 python layout: missing {', '.join(missing)}; expected the folder "
            "'cifar-10-batches-py' with data_batch_1..5 and test_batch (the official python version)")
    return path


#: The only globals a CIFAR batch needs: NumPy's array rebuilding (``numpy.core`` before NumPy 2).
_ALLOWED_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                    for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, "
                                         "lists and bytes, and loading anything else could run code")
        return super().find_class(module, name)


def _read_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(file, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], batch[b"labels"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as err:
        raise CifarLayoutError(f"{file} is not a CIFAR-10 pickle batch (expected keys b'data' and b'labels'): "
                               f"{err}") from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise CifarLayoutError(f"{file}: b'data' must be N x 3072 uint8, got shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 [N, 3, 32, 32] and int64 labels, for ``split`` in {'train', 'test'}."""
    root = check_cifar_dir(path)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    files = TRAIN_FILES if split == "train" else [TEST_FILE]
    parts = [_read_batch(root / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def train_val_split(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced held-out validation split from the training data (the paper holds 5,000)."""
    if not 0 < val_size < len(labels):
        raise ValueError(f"val_size must be in 1..{len(labels) - 1}, got {val_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    classes = np.unique(labels)
    per_class = val_size // len(classes)
    val = np.concatenate([order[labels[order] == c][:per_class] for c in classes])
    extra = val_size - len(val)
    if extra:
        rest = np.setdiff1d(order, val, assume_unique=False)
        val = np.concatenate([val, rng.permutation(rest)[:extra]])
    train = np.setdiff1d(np.arange(len(labels)), val)
    return rng.permutation(train), np.sort(val)
