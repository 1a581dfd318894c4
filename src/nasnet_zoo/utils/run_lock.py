"""One writer per run folder: an exclusive ``flock`` on ``OUTPUT/.lock``, held for the life of the process.

Why ``fcntl.flock`` and not a pid file: the kernel drops the lock when the holder's file descriptor closes,
which includes ``kill -9``, a crash and the end of a cluster job, so a lock can never go stale and block a
``--resume``. (The ``filelock`` package offers the same on POSIX; the whole job is one system call, so no
dependency is added.) On NFS, Linux maps ``flock`` to a byte-range lock that the server arbitrates, so two
machines on one shared folder exclude each other too. The lock file's text (pid, host, start time, command) is
only there to tell a second process who holds the folder. A run that fails before writing anything removes the
folder it created (lock file included), so a bad setting leaves no trace; a process that locked a lock file
just removed that way notices (its file is no longer the one at the path) and locks the new one instead.
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    """Another live process writes to this run folder; the message names it and what to do."""


def is_main_process() -> bool:
    """True for rank 0 of a torchrun job (or a single process): only it takes the run folder's lock.

    Read from torchrun's environment, so the lock is taken before any data is scanned or a process group forms.
    """
    return int(os.environ.get("RANK", "0")) == 0


class RunLock:
    """An exclusive lock on one run folder; ``release()`` (or leaving a ``with`` block, or exiting) frees it."""

    def __init__(self, folder: Path, file: IO[str] | None, created_folder: bool = False) -> None:
        self.folder = folder
        self._file = file
        self._created_folder = created_folder

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Drop the lock; a folder this lock created and nothing else wrote to is removed first."""
        if self._file is None:
            return
        try:
            if self._created_folder and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
                (self.folder / LOCK_NAME).unlink()
                self.folder.rmdir()
        except OSError:  # removed or changed meanwhile: nothing of ours to tidy
            pass
        self._file.close()  # closing the descriptor drops the flock
        self._file = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_run_folder(folder: str | os.PathLike[str], *, enabled: bool = True) -> RunLock:
    """Take ``folder``'s lock or raise :class:`RunFolderBusy` at once (no waiting).

    ``enabled=False`` (the other ranks of a torchrun job) returns a lock that holds nothing.
    """
    folder = Path(folder)
    if not enabled:
        return RunLock(folder, None)
    created = not folder.exists()
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+", encoding="utf-8")  # not truncated before the lock is ours: the holder's text stays
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = " ".join(file.read().split()) or "a process that has not written its details yet"
            file.close()
            raise RunFolderBusy(
                f"run folder {folder} is in use by another process ({holder}). Only one process may write to a run "
                "folder: wait for that one to finish or stop it, then rerun with --resume; or choose another "
                "--output-dir") from None
        if _same_file(file, path):
            break
        file.close()  # the previous holder removed the folder it created: lock the file that is there now
    file.seek(0)
    file.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "?"
    file.write(f"pid {os.getpid()} on host {socket.gethostname()}, started {started}, command: {command}\n")
    file.flush()
    return RunLock(folder, file, created_folder=created)


def _same_file(file: IO[str], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False
