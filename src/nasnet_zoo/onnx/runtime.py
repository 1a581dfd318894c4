"""onnxruntime sessions for exported nasnet-zoo models: provider choice, file checks, image input.

Everything here runs without PyTorch models; it is what a deployment needs besides the .onnx file.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Prefix of every metadata key nasnet-zoo writes into an exported file.
META_PREFIX = "nasnet_zoo."
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class OnnxModelError(ValueError):
    """An .onnx file that cannot be used: missing, truncated, corrupt, or not exported by nasnet-zoo."""


class OnnxRuntimeSetupError(RuntimeError):
    """onnxruntime is missing or cannot provide what was asked for."""


def installed_runtimes(distributions: Sequence[str] = ("onnxruntime", "onnxruntime-gpu")) -> list[str]:
    """The onnxruntime wheels installed in this environment (they all provide the same module)."""
    found = []
    for name in distributions:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_runtime_install(installed: Sequence[str] | None = None) -> None:
    """Warn when onnxruntime and onnxruntime-gpu are both installed.

    Both wheels write the same ``onnxruntime`` module, so whichever was installed last silently wins and
    CUDA may be missing although onnxruntime-gpu is listed.
    """
    installed = installed_runtimes() if installed is None else list(installed)
    if "onnxruntime" in installed and "onnxruntime-gpu" in installed:
        warnings.warn("both onnxruntime and onnxruntime-gpu are installed; they provide the same module and the "
                      "one installed last wins, so the CUDA provider may be missing. Keep one: "
                      "`pip uninstall -y onnxruntime onnxruntime-gpu` then `pip install nasnet-zoo[gpu]` "
                      "(CUDA) or `pip install nasnet-zoo[onnx]` (CPU)", RuntimeWarning, stacklevel=3)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxRuntimeSetupError("onnxruntime is not installed: `pip install nasnet-zoo[onnx]` (CPU) or "
                                    "`pip install nasnet-zoo[gpu]` (CUDA)") from err
    check_runtime_install()
    return onnxruntime


def choose_providers(requested: Sequence[str] | None = None, available: Sequence[str] | None = None) -> list[str]:
    """CUDA then CPU when no providers are requested and this onnxruntime has CUDA; else only CPU.

    A listed CUDA provider does not prove a usable GPU (onnxruntime-gpu falls back to CPU without one), so
    callers must read back ``session.get_providers()``.
    """
    if available is None:
        available = _import_ort().get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise OnnxRuntimeSetupError(f"providers {missing} are not available in this onnxruntime "
                                        f"(available: {list(available)}); for CUDA install nasnet-zoo[gpu]")
        return list(requested)
    return [CUDA, CPU] if CUDA in available else [CPU]


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None, *, task: str,
                 threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An InferenceSession on ``path`` and the nasnet-zoo metadata it carries, with clear errors for bad files.

    ``threads`` caps onnxruntime's intra-op threads (default: one per core).
    """
    ort = _import_ort()
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist; create it with tools/export_onnx.py")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=choose_providers(providers))
    except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise OnnxModelError(f"{path} is not a readable ONNX model ({type(err).__name__}: {str(err)[:200]}); "
                             "it may be truncated or corrupt: export it again with tools/export_onnx.py") from None
    metadata = decode_metadata(session.get_modelmeta().custom_metadata_map)
    if metadata.get("task") != task:
        found = f"a {metadata['task']} model" if "task" in metadata else "not exported by nasnet-zoo"
        raise OnnxModelError(f"{path} is {found}, expected a {task} model from tools/export_onnx.py")
    return session, metadata


def encode_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Metadata values as ONNX ``metadata_props`` strings (JSON for anything that is not a string)."""
    return {META_PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(META_PREFIX):
            continue
        try:
            out[key[len(META_PREFIX):]] = json.loads(value)
        except json.JSONDecodeError:
            out[key[len(META_PREFIX):]] = value
    return out


_IMAGE_HINT = "pass a file path, a PIL image, or a uint8 numpy array of shape [H, W, 3] (RGB) or [H, W]"


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported image input as a contiguous uint8 RGB array [H, W, 3]."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB")).copy()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path} is not a readable image ({err})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).copy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image array has dtype {image.dtype}; {_IMAGE_HINT} (floats in [0, 1]: "
                            "`(a * 255).round().astype(np.uint8)`)")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            hint = " (channels first? use `a.transpose(1, 2, 0)`)" if image.ndim == 3 and image.shape[0] in (3, 4) else ""
            raise ValueError(f"image array has shape {image.shape}{hint}; {_IMAGE_HINT}")
        return np.ascontiguousarray(image[:, :, :3])
    raise TypeError(f"unsupported image type {type(image).__name__}; {_IMAGE_HINT}")
