"""The weights cache and checked downloads from an entry's mirrors.

Files live in ``$NASNET_ZOO_HOME`` (default ``~/.cache/nasnet_zoo``) under the primary URL's file name; TF
archives are unpacked under ``<cache>/extracted/``. A missing file is downloaded with
``torch.hub.download_url_to_file`` from each of the entry's URLs in turn until one gives the right file;
``NASNET_ZOO_OFFLINE=1`` forbids downloads.

A download lands in the cache only complete and verified: it is written under a temporary name beside the
cache file (``utils.io.atomic_path``; torch.hub itself streams into a ``.partial`` file first), its sha256 is
checked, and only then is it renamed into place. Without a published hash the file must prove itself whole
instead, because torch.hub accepts a connection that closes early as the end of the file: gzip's trailer (CRC
and length) for TF archives, every member's CRC for zip-based files (``torch.save``, ``.npz``), the header
and its data extent for safetensors, a full load for legacy pickles. An interrupted or rejected download
leaves nothing behind.
"""
from __future__ import annotations

import http.client
import logging
import os
import tarfile
import zipfile
from pathlib import Path

import torch

from ..utils.io import atomic_path, sha256_file
from .manifest import Weights

log = logging.getLogger(__name__)


class RejectedFileError(ValueError):
    """A file is not the one its manifest entry describes: another sha256, or (without a hash) incomplete."""


def cache_dir() -> Path:
    return Path(os.environ.get("NASNET_ZOO_HOME") or Path.home() / ".cache" / "nasnet_zoo").expanduser()


def extract_dir() -> Path:
    """Where TF archives (downloaded or given by path) are unpacked: inside the cache, never beside a file."""
    return cache_dir() / "extracted"


def offline() -> bool:
    return os.environ.get("NASNET_ZOO_OFFLINE", "") not in ("", "0")


def _url_list(weights: Weights) -> str:
    return " or ".join(weights.urls)


def check_hash(file: Path, weights: Weights, final: Path) -> None:
    """Raise :class:`RejectedFileError` unless ``file`` has the entry's sha256 (full or published prefix)."""
    if not weights.sha256:
        return  # nothing published: the format checks happen when the file is read
    actual = sha256_file(file)
    if not actual.startswith(weights.sha256):
        raise RejectedFileError(f"hash mismatch for weights {weights.name}: {final} has sha256 {actual}, expected "
                                f"{weights.sha256}. Delete it and download it again from {_url_list(weights)} "
                                "(or load a file you trust by path: pretrained='/path/to/file')")


def _check_complete(file: Path, weights: Weights, url: str) -> None:
    """Without a hash, a truncated download still shows in the file's own structure."""
    try:
        if weights.file_format == "tf-checkpoint-archive":
            with tarfile.open(file, "r:gz") as tar:
                for member in tar:
                    stream = tar.extractfile(member) if member.isfile() else None
                    while stream is not None and stream.read(1 << 20):
                        pass
        elif weights.file_format == "safetensors":
            from safetensors import safe_open
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open API)
                    f.get_slice(key)
        elif zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} fails its CRC")
        else:
            torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # every reader's own error type means the same here: not the whole file
        raise RejectedFileError(f"the download of {weights.name} from {url} is not a complete {weights.file_format} "
                                f"file ({type(e).__name__}: {e})") from None


def fetch(weights: Weights) -> Path:
    """Path of the weight file in the cache, downloaded from the first mirror that gives the right file."""
    path = cache_dir() / weights.file_name
    if path.is_file():
        check_hash(path, weights, path)
        return path
    expected = weights.sha256 or f"none published: {weights.sha256_unavailable}"
    where = (f"download {_url_list(weights)} (sha256 {expected}) and put it at {path}, or set NASNET_ZOO_HOME to "
             "the folder that holds it")
    if offline():
        raise FileNotFoundError(f"weights {weights.name} are not in the cache and NASNET_ZOO_OFFLINE is set: {where}")
    failures: list[str] = []
    wrong_file = False
    for url in weights.urls:
        try:
            with atomic_path(path) as tmp:
                torch.hub.download_url_to_file(url, str(tmp), progress=True)
                check_hash(tmp, weights, path)
                if not weights.sha256:
                    _check_complete(tmp, weights, url)
            return path
        except RejectedFileError as e:
            wrong_file = True
            failures.append(f"{url}: {e}")
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, refused, DNS, cut connections
            failures.append(f"{url}: {type(e).__name__}: {e}")
        if len(failures) < len(weights.urls):
            log.warning("weights %s: %s; trying the next mirror", weights.name, failures[-1])
    tried = "; ".join(failures)
    if wrong_file:
        raise RejectedFileError(f"no mirror of weights {weights.name} gave the expected file ({tried}); nothing was "
                                f"written to {path}")
    raise FileNotFoundError(f"could not download weights {weights.name} ({tried}): {where}")
