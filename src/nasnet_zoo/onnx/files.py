"""The nasnet-zoo .onnx file: metadata (what the graph takes and returns) stored in the file, checked writes."""
from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

from ..utils.extras import require
from ..utils.io import atomic_path

#: Prefix of every metadata key nasnet-zoo writes into an exported file.
META_PREFIX = "nasnet_zoo."


def require_onnx() -> types.ModuleType:
    """The ``onnx`` package (the ``onnx`` extra); exports call it first, before anything is traced."""
    return require("onnx", extra="onnx", feature="ONNX export")


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Metadata values as ONNX ``metadata_props`` strings (JSON for anything that is not a string)."""
    return {META_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The nasnet-zoo entries of a file's ``metadata_props``, prefix removed, JSON values parsed."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(META_PREFIX):
            continue
        try:
            out[key[len(META_PREFIX):]] = json.loads(value)
        except json.JSONDecodeError:
            out[key[len(META_PREFIX):]] = value
    return out


def save_onnx(model: Any, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Attach nasnet-zoo metadata to an ``onnx.ModelProto``, run the ONNX checker and write ``path`` atomically."""
    from .. import __version__
    onnx = require_onnx()
    kept = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept},
                                        **encode_metadata({**metadata, "version": __version__})})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path
