"""Durable file writes: nothing half-written survives a crash, a kill or a full disk."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import torch

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """The disk (or quota) filled up while a file was written; the previous version of the file is intact."""


def _disk_full_cause(err: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error behind ``err``, if any (torch.save wraps the OSError of a write in a RuntimeError)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _free_bytes(directory: Path) -> str:
    try:
        return f"{shutil.disk_usage(directory).free / 2**20:.0f} MiB free"
    except OSError:
        return "free space unknown"


def _disk_full_error(action: str, directory: Path, full: OSError, kept: str) -> DiskFullError:
    return DiskFullError(full.errno, f"disk full while {action} ({full.strerror}; {_free_bytes(directory)} in "
                         f"{directory}); {kept}. Free space there or use another output folder, then rerun "
                         "(with --resume for a training or search run)")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    A full disk (at any write, the fsync or the rename) raises :class:`DiskFullError` naming the folder and
    leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Path | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except Exception as err:
        full = _disk_full_cause(err)
        if full is None:
            raise
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise _disk_full_error(f"writing {path}", path.parent, full, kept) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """An open file that replaces ``path`` only once it is completely written (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weights files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    # Through a Python file, so that a full disk surfaces as the OSError it is (torch's own writer hides it).
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any], *, durable: bool = True) -> None:
    """Append one JSON line; with ``durable`` the line is on disk when this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=False) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            if durable:
                os.fsync(f.fileno())
    except OSError as err:
        if err.errno not in _DISK_FULL:
            raise
        # A partly written line is a torn tail, which readers of the file cut.
        raise _disk_full_error(f"appending to {path}", path.parent, err, "the lines before are intact") from None


class JsonlLineError(ValueError):
    """A line in the middle of a JSON-lines file that does not parse; ``line`` is its 1-based number."""

    def __init__(self, path: Path, line: int) -> None:
        super().__init__(f"{path}: line {line} is not valid JSON")
        self.path, self.line = path, line


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read JSON lines, ignoring a torn last line left by a kill mid-write."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn tail from a crash: the record was never complete
            raise JsonlLineError(path, i + 1) from None
    return records
