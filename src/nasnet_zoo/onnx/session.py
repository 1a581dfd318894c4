"""onnxruntime sessions for exported models: which providers to ask for, what the session really runs, and
clear errors for missing runtimes and unusable files. Every runner (classifier, detector, detectron2 parity)
opens its session here.
"""
from __future__ import annotations

import importlib.metadata
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..utils.extras import require
from .files import decode_metadata

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: What writes files of each ``task`` (for the hint in errors); classifiers and detectors: the CLI.
EXPORTERS = {"detectron2": "nasnet_zoo.onnx.export_d2_detector"}


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
    onnxruntime = require("onnxruntime", extra="onnx",
                          feature="Running .onnx files (for CUDA: the 'gpu' extra instead)")
    check_runtime_install()
    return onnxruntime


def choose_providers(requested: Sequence[str] | None = None, available: Sequence[str] | None = None) -> list[str]:
    """CUDA then CPU when no providers are requested and this onnxruntime has CUDA; else only CPU.

    A listed CUDA provider does not prove a usable GPU (onnxruntime-gpu falls back to CPU without one);
    :func:`open_session` reads back what the session runs and warns about a fallback.
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


def providers_for_device(device: str) -> list[str]:
    """The providers to request for a torch-style device name: ``cuda``/``cuda:N`` -> CUDA then CPU, ``cpu`` -> CPU."""
    if device == "cpu":
        return [CPU]
    if device == "cuda" or device.startswith("cuda:"):
        return [CUDA, CPU]
    raise ValueError(f"device {device!r} has no onnxruntime provider here; use 'cpu' or 'cuda'")


def report_fallback(asked: Sequence[str], active: Sequence[str], path: str | os.PathLike) -> None:
    """Warn when a provider other than CPU was asked for and the session does not run it.

    onnxruntime-gpu without a usable GPU (or without its CUDA/cuDNN libraries) quietly runs on CPU; the
    warning names what runs instead so that slow timings are not mistaken for GPU figures.
    """
    dropped = [p for p in asked if p != CPU and p not in active]
    if dropped:
        warnings.warn(f"{path}: onnxruntime was asked for {dropped} but runs on {list(active)}; check that a GPU "
                      "is visible and that onnxruntime-gpu matches the installed CUDA and cuDNN",
                      RuntimeWarning, stacklevel=3)


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None, *, task: str,
                 threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An InferenceSession on ``path`` and the nasnet-zoo metadata it carries, with clear errors for bad files.

    ``task`` is the ``task`` metadata the file must carry ("classification", "detection", "detectron2");
    ``providers=None`` chooses with :func:`choose_providers`; ``threads`` caps onnxruntime's intra-op
    threads (default: one per core). ``session.get_providers()`` says what really runs.
    """
    ort = _import_ort()
    path = Path(path)
    exporter = EXPORTERS.get(task, "tools/export_onnx.py")
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} does not exist; create it with {exporter}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    asked = choose_providers(providers)
    try:
        session = ort.InferenceSession(str(path), options, providers=asked)
    except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise OnnxModelError(f"{path} is not a readable ONNX model ({type(err).__name__}: {str(err)[:200]}); "
                             f"it may be truncated or corrupt: export it again with {exporter}") from None
    metadata = decode_metadata(session.get_modelmeta().custom_metadata_map)
    if metadata.get("task") != task:
        found = f"a {metadata['task']} model" if "task" in metadata else "not exported by nasnet-zoo"
        raise OnnxModelError(f"{path} is {found}, expected a {task} model from {exporter}")
    report_fallback(asked, session.get_providers(), path)
    return session, metadata
