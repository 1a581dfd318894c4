"""The weights manifest: its schema, its validation, the lookups by name, and the one builder of entries.

``pretrained/manifest.json`` lists every known weight file, one entry per weight (torchvision style).
``$NASNET_ZOO_MANIFEST`` names an extra manifest whose entries add to (or replace) the built-in ones, for weights
converted or trained locally. Every entry carries a full sha256, or the reason it cannot (``sha256_unavailable``;
``sha256`` then holds the published prefix, or null when none was published).
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..convert import SOURCES as FOREIGN_SOURCES

FORMAT_VERSION = 2  # 2: ``urls`` (mirrors) and ``sha256_unavailable``; version 1 had one ``url`` and ``hash_note``
SOURCES = ("ours", *FOREIGN_SOURCES)
FILE_FORMATS = ("safetensors", "pth", "npz", "tf-checkpoint-archive")
INPUT_FIELDS = ("input_size", "mean", "std", "crop_pct", "interpolation")
_REQUIRED_FIELDS = ("name", "architecture", "urls", "sha256", "source", "file_format", "num_classes", "dataset",
                    "metrics", "license", "input")
_LEGACY_FIELDS = {"url": "urls", "hash_note": "sha256_unavailable"}  # format_version 1 spellings
_FULL_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class Weights:
    """One published weight file and what it needs (torchvision ``WeightsEnum``-style metadata)."""

    name: str
    architecture: str
    urls: tuple[str, ...]
    sha256: str | None
    source: str
    file_format: str
    num_classes: int
    dataset: str
    metrics: dict[str, Any]
    license: str
    input: dict[str, Any]
    padding: str = "tf"
    default: bool = False
    sha256_unavailable: str = ""
    notes: str = ""

    @property
    def url(self) -> str:
        """The primary URL (the first mirror)."""
        return self.urls[0]

    @property
    def file_name(self) -> str:
        """The cache file name: the primary URL's last path component (mirrors are the same file)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def has_full_hash(self) -> bool:
        return bool(self.sha256 and _FULL_SHA256.match(self.sha256))

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], origin: str) -> "Weights":
        name = entry.get("name", "?")
        entry = {_LEGACY_FIELDS.get(k, k): v for k, v in entry.items()}
        if isinstance(entry.get("urls"), str):
            entry["urls"] = [entry["urls"]]
        missing = set(_REQUIRED_FIELDS) - set(entry)
        unknown = set(entry) - set(cls.__dataclass_fields__)
        if missing or unknown:
            raise ValueError(f"{origin}: weight entry {name!r} has missing fields {sorted(missing)} / unknown fields "
                             f"{sorted(unknown)}")
        urls = entry["urls"]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and "://" in u for u in urls):
            raise ValueError(f"{origin}: weight entry {name!r}: urls must be a non-empty list of URLs, got {urls!r}")
        w = cls(**{**entry, "urls": tuple(urls), "sha256": entry["sha256"].lower() if entry["sha256"] else None})
        if w.source not in SOURCES or w.file_format not in FILE_FORMATS:
            raise ValueError(f"{origin}: weight entry {name!r}: source must be one of {SOURCES} and file_format one "
                             f"of {FILE_FORMATS}, got {w.source!r} / {w.file_format!r}")
        if not w.name.startswith(f"{w.architecture}."):
            raise ValueError(f"{origin}: weight name {w.name!r} must be '<architecture>.<tag>' ({w.architecture}.…)")
        if w.sha256 is not None and not _HEX.match(w.sha256):
            raise ValueError(f"{origin}: weight entry {name!r}: sha256 must be hex (a full hash or a published "
                             f"prefix), got {w.sha256!r}")
        if not w.has_full_hash and not w.sha256_unavailable.strip():
            raise ValueError(f"{origin}: weight entry {name!r} has no full sha256 ({w.sha256!r}) and no "
                             "'sha256_unavailable' reason; record the file's sha256, or say why it cannot be known")
        return w

    def meta(self) -> dict[str, Any]:
        """What a model carries in ``pretrained_cfg`` once these weights are loaded."""
        return {"tag": self.name, "url": self.url, "source": self.source, "dataset": self.dataset,
                "metrics": self.metrics, "license": self.license, "padding": self.padding, **self.input}


def manifest_entry(*, architecture: str, tag: str, urls: Sequence[str], sha256: str, source: str, file_format: str,
                   num_classes: int, dataset: str, metrics: Mapping[str, Any], license: str,
                   input_cfg: Mapping[str, Any], padding: str, notes: str) -> dict[str, Any]:
    """A manifest entry as JSON-ready data, validated against the schema: the one place entries are built."""
    entry = {
        "name": f"{architecture}.{tag}", "architecture": architecture, "default": False, "urls": list(urls),
        "sha256": sha256, "source": source, "file_format": file_format, "num_classes": int(num_classes),
        "dataset": dataset, "metrics": dict(metrics), "license": license,
        "input": {k: list(v) if isinstance(v, tuple) else v for k, v in input_cfg.items() if k in INPUT_FIELDS},
        "padding": padding, "notes": notes,
    }
    Weights.from_dict(entry, "manifest_entry()")
    return entry


def read_manifest(text: str, origin: str) -> dict[str, Weights]:
    """Entries of one manifest file's text, by name."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("weights"), list):
        raise ValueError(f"{origin}: a manifest is a JSON object with a 'weights' list")
    entries = [Weights.from_dict(e, origin) for e in data["weights"]]
    return {w.name: w for w in entries}


def load_manifest() -> dict[str, Weights]:
    """Built-in manifest, extended by ``$NASNET_ZOO_MANIFEST`` when set."""
    builtin = resources.files("nasnet_zoo.pretrained").joinpath("manifest.json")
    manifest = read_manifest(builtin.read_text(encoding="utf-8"), "pretrained/manifest.json")
    extra = os.environ.get("NASNET_ZOO_MANIFEST")
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise FileNotFoundError(f"NASNET_ZOO_MANIFEST={extra} is not a file")
        manifest.update(read_manifest(path.read_text(encoding="utf-8"), str(path)))
    return manifest


def list_weights(architecture: str | None = None) -> list[str]:
    """Weight names, the default of each architecture first."""
    entries = [w for w in load_manifest().values() if architecture in (None, w.architecture)]
    return [w.name for w in sorted(entries, key=lambda w: (w.architecture, not w.default, w.name))]


def weights_for_model(model_name: str) -> list[str]:
    """Weight names for one architecture (what ``list_models(pretrained=True)`` asks)."""
    return list_weights(model_name)


def get_weights(name: str, model_name: str | None = None) -> Weights:
    """A manifest entry by full name, or by tag relative to ``model_name`` (``"tf_in1k"``)."""
    manifest = load_manifest()
    if name not in manifest and model_name and f"{model_name}.{name}" in manifest:
        name = f"{model_name}.{name}"
    if name not in manifest:
        candidates = list(manifest) + [w.tag for w in manifest.values() if w.architecture == model_name]
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown weights {name!r}{hint} (nasnet_zoo.hub.list_weights() lists {len(manifest)}; "
                         "a local file must exist at the path given)")
    return manifest[name]


def default_weights(model_name: str) -> Weights:
    """The entry ``pretrained=True`` loads; a default in ``$NASNET_ZOO_MANIFEST`` wins over the built-in one."""
    defaults = [w for w in load_manifest().values() if w.architecture == model_name and w.default]
    if not defaults:
        raise ValueError(f"{model_name} has no pretrained weights in the manifest; pass pretrained=<file path>")
    return defaults[-1]
