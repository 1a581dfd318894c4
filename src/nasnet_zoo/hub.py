"""Pretrained weights by name: the manifest, the local cache, checked downloads, conversion on load.

``pretrained/manifest.json`` lists every known weight file (one entry per weight, torchvision style). Files
live in ``$NASNET_ZOO_HOME`` (default ``~/.cache/nasnet_zoo``) under their published names; a missing file is
downloaded with ``torch.hub`` unless ``NASNET_ZOO_OFFLINE=1``, and its sha256 checked. ``$NASNET_ZOO_MANIFEST``
names an extra manifest whose entries add to (or replace) the built-in ones, for weights you converted yourself.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .convert import SOURCES as FOREIGN_SOURCES
from .convert import convert_state_dict
from .convert.files import read_weights_file
from .utils.io import atomic_path, sha256_file

SOURCES = ("ours", *FOREIGN_SOURCES)
FILE_FORMATS = ("safetensors", "pth", "npz", "tf-checkpoint-archive")
log = logging.getLogger(__name__)
_REQUIRED_FIELDS = ("name", "architecture", "url", "sha256", "source", "file_format", "num_classes", "dataset",
                    "metrics", "license", "input")


@dataclass(frozen=True)
class Weights:
    """One published weight file and what it needs (torchvision ``WeightsEnum``-style metadata)."""

    name: str
    architecture: str
    url: str
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
    hash_note: str = ""
    notes: str = ""

    @property
    def file_name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], origin: str) -> "Weights":
        name = entry.get("name", "?")
        missing = set(_REQUIRED_FIELDS) - set(entry)
        unknown = set(entry) - set(cls.__dataclass_fields__)
        if missing or unknown:
            raise ValueError(f"{origin}: weight entry {name!r} has missing fields {sorted(missing)} / unknown fields "
                             f"{sorted(unknown)}")
        w = cls(**entry)
        if w.source not in SOURCES or w.file_format not in FILE_FORMATS:
            raise ValueError(f"{origin}: weight entry {name!r}: source must be one of {SOURCES} and file_format one "
                             f"of {FILE_FORMATS}, got {w.source!r} / {w.file_format!r}")
        if not w.name.startswith(f"{w.architecture}."):
            raise ValueError(f"{origin}: weight name {w.name!r} must be '<architecture>.<tag>' ({w.architecture}.…)")
        return w

    def meta(self) -> dict[str, Any]:
        """What a model carries in ``pretrained_cfg`` once these weights are loaded."""
        return {"tag": self.name, "url": self.url, "source": self.source, "dataset": self.dataset,
                "metrics": self.metrics, "license": self.license, "padding": self.padding, **self.input}


# ---- manifest -----------------------------------------------------------------------------------------------
def _read_manifest(text: str, origin: str) -> dict[str, Weights]:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("weights"), list):
        raise ValueError(f"{origin}: a manifest is a JSON object with a 'weights' list")
    entries = [Weights.from_dict(e, origin) for e in data["weights"]]
    return {w.name: w for w in entries}


def load_manifest() -> dict[str, Weights]:
    """Built-in manifest, extended by ``$NASNET_ZOO_MANIFEST`` when set."""
    builtin = resources.files("nasnet_zoo.pretrained").joinpath("manifest.json")
    manifest = _read_manifest(builtin.read_text(encoding="utf-8"), "pretrained/manifest.json")
    extra = os.environ.get("NASNET_ZOO_MANIFEST")
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise FileNotFoundError(f"NASNET_ZOO_MANIFEST={extra} is not a file")
        manifest.update(_read_manifest(path.read_text(encoding="utf-8"), str(path)))
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


# ---- cache and download -------------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("NASNET_ZOO_HOME") or Path.home() / ".cache" / "nasnet_zoo").expanduser()


def _hash_matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected.lower())


def _offline() -> bool:
    return os.environ.get("NASNET_ZOO_OFFLINE", "") not in ("", "0")


def fetch(weights: Weights) -> Path:
    """Path of the weight file in the cache, downloaded (and hash-checked) when missing."""
    path = cache_dir() / weights.file_name
    expected = weights.sha256 or "none published"
    where = (f"download {weights.url} (sha256 {expected}) and put it at {path}, or set NASNET_ZOO_HOME to the "
             "folder that holds it")
    if not path.is_file():
        if _offline():
            raise FileNotFoundError(f"weights {weights.name} are not in the cache and NASNET_ZOO_OFFLINE is set: {where}")
        try:
            with atomic_path(path) as tmp:
                torch.hub.download_url_to_file(weights.url, str(tmp), progress=True)
                _check_hash(tmp, weights, path)
        except OSError as e:  # URLError, DNS, refused connections, no route
            raise FileNotFoundError(f"could not download weights {weights.name} ({e}): {where}") from None
        return path
    _check_hash(path, weights, path)
    return path


def _check_hash(file: Path, weights: Weights, final: Path) -> None:
    if not weights.sha256:
        return  # nothing published; the format check happens when the file is read and converted
    actual = sha256_file(file)
    if not _hash_matches(actual, weights.sha256):
        raise ValueError(f"hash mismatch for weights {weights.name}: {final} has sha256 {actual}, expected "
                         f"{weights.sha256}. Delete it and download {weights.url} again to {final} "
                         "(or load a file you trust by path: pretrained='/path/to/file')")


# ---- loading ------------------------------------------------------------------------------------------------
def resolve(weight: str | None, model_name: str) -> tuple[Path, Weights | None]:
    """(file, manifest entry or None) for ``pretrained=True`` (None), a manifest name/tag, or a local path."""
    if weight is not None and (os.sep in weight or Path(weight).expanduser().exists()):
        path = Path(weight).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"weight file {path} does not exist")
        return path, None
    entry = default_weights(model_name) if weight is None else get_weights(weight, model_name)
    if entry.architecture != model_name:
        raise ValueError(f"weights {entry.name} are for {entry.architecture}, not {model_name}: use "
                         f"create_model({entry.architecture!r}, pretrained={entry.name!r})")
    return fetch(entry), entry


def load_pretrained(model: nn.Module, weight: str | None, *, model_name: str, source: str | None = None) -> None:
    """Load weights into ``model`` (built as ``model_name``), converting foreign formats.

    ``weight`` is None for the architecture's default, a manifest name or tag, or a local file path;
    ``source`` overrides the guessed layout of a local file (``"cadene"``, ``"timm"``, ``"tf"``, ``"ours"``).
    """
    path, entry = resolve(weight, model_name)
    raw, found_source, metadata = read_weights_file(path, source or (entry.source if entry else None))
    arch = metadata.get("architecture")
    if arch and arch != model_name:
        raise ValueError(f"{path} holds weights for {arch}, not {model_name}: use create_model({arch!r}, pretrained=...)")
    state = dict(raw) if found_source == "ours" else convert_state_dict(raw, source=found_source)
    check_fits(model, state, origin=str(path), model_name=model_name)
    model.load_state_dict(fit_heads(state, model, origin=str(path)), strict=False)
    if entry is not None:
        model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **entry.meta(),
                                "num_classes": model.config.num_classes}
        _warn_padding(model, entry.padding, entry.name)
    elif found_source == "timm":
        _warn_padding(model, "timm", str(path))


def _warn_padding(model: nn.Module, needed: str, what: str) -> None:
    mode = getattr(getattr(model, "config", None), "padding", needed)
    if mode != needed:
        warnings.warn(f"weights {what} reproduce their published outputs with padding={needed!r} but this model uses "
                      f"padding={mode!r}; build it with create_model(..., padding={needed!r}) to match them exactly",
                      stacklevel=3)


_HEAD_KEYS = ("classifier.weight", "classifier.bias")
_AUX_FC_KEYS = ("aux_head.fc.weight", "aux_head.fc.bias")


def fit_heads(state: dict[str, torch.Tensor], model: nn.Module, *, origin: str) -> dict[str, torch.Tensor]:
    """Adapt the checkpoint's heads to the model.

    A 1001-class TF head loses class 0 (the background) for a 1000-class model; any other class-count mismatch
    drops the classifier with a warning (it stays randomly initialised, ready for fine-tuning), as timm does.
    An auxiliary head sized for another input size is dropped too (it only matters in training).
    """
    state = dict(state)
    own = model.state_dict()
    if "classifier.weight" in state:
        have, want = state["classifier.weight"].shape[0], int(model.config.num_classes)
        if have == 1001 and want == 1000:
            for key in _HEAD_KEYS + _AUX_FC_KEYS:
                if key in state and state[key].shape[0] == 1001:
                    state[key] = state[key][1:].clone()
        elif have != want:
            for key in _HEAD_KEYS + _AUX_FC_KEYS:
                state.pop(key, None)
            if want > 0:
                warnings.warn(f"{origin} has a {have}-class classifier and the model {want} classes: the classifier "
                              "is left randomly initialised (train it before use)", stacklevel=3)
    stale_aux = [k for k, v in state.items() if k.startswith("aux_head.") and (k not in own or own[k].shape != v.shape)]
    if stale_aux:
        log.info("%s: auxiliary head of another shape not loaded (%s)", origin, stale_aux[:2])
    return {k: v for k, v in state.items() if k not in stale_aux}


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], *, origin: str, model_name: str) -> None:
    """Explain what does not fit; an absent auxiliary head or a classifier of another size is fine."""
    own = model.state_dict()
    head = ("aux_head.", "classifier.")
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape and not k.startswith(head)]
    unexpected = [k for k in state if k not in own and not k.startswith(head)]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked") and not k.startswith(head)]
    if mismatched or unexpected or missing:
        guess = guess_architecture(state)
        hint = f"; it looks like {guess} weights" if guess and guess != model_name else ""
        raise ValueError(f"{origin} does not fit {model_name}{hint}: {len(mismatched)} shape mismatches "
                         f"{mismatched[:3]}, {len(missing)} missing {missing[:3]}, {len(unexpected)} unexpected "
                         f"{unexpected[:3]}")
    if any(k.startswith("aux_head.") for k in own) and not any(k.startswith("aux_head.") for k in state):
        log.info("%s carries no auxiliary head; it keeps its random init (it only matters in training)", origin)


def guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """The NASNet-A config whose stem width and normal-cell count match a converted state dict."""
    from .models.nasnet_a import CONFIGS
    stem = state.get("stem.conv.weight")
    cells = {k.split(".")[1] for k in state if k.startswith("cells.cell_") and not k.startswith("cells.cell_stem")}
    if stem is None:
        return None
    for name, entry in CONFIGS.items():
        arch = entry["arch"]
        width = round(32 * arch["stem_multiplier"]) if arch["stem"] == "imagenet" else \
            int(arch["num_conv_filters"] * arch["stem_multiplier"])
        if stem.shape[0] == width and len(cells) == 3 * arch["cells_per_stack"]:
            return name
    return None
