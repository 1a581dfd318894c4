"""ONNX export of nasnet-zoo models and their onnxruntime runners (detectors: ``nasnet_zoo.detection.onnx``)."""
from __future__ import annotations

from .classifier import OnnxClassifier
from .export import ClassifierGraph, default_class_names, export_classifier, save_onnx
from .runtime import (OnnxModelError, OnnxRuntimeSetupError, check_runtime_install, choose_providers, load_image,
                      open_session)
from .verify import ParityCase, ParityReport, builtin_classifier_cases, run_classifier_parity

__all__ = [
    "ClassifierGraph", "OnnxClassifier", "OnnxModelError", "OnnxRuntimeSetupError", "ParityCase", "ParityReport",
    "builtin_classifier_cases", "check_runtime_install", "choose_providers", "default_class_names",
    "export_classifier", "load_image", "open_session", "run_classifier_parity", "save_onnx",
]
