"""ONNX export of nasnet-zoo models and their onnxruntime runners: classifiers, torchvision-style detectors and
detectron2 detectors, with one session opener, one parity report and one set of tolerances.

Modules: ``session`` (onnxruntime sessions and providers), ``files`` (metadata in the file), ``images`` (image
input), ``parity`` (tolerances, comparisons, report, test images), ``classifier``, ``detector``, ``d2``
(detectron2, imported only when used).
"""
from __future__ import annotations

from .classifier import ClassifierGraph, OnnxClassifier, default_class_names, export_classifier
from .d2 import export_d2_detector, run_d2_parity
from .detector import DetectorGraph, OnnxDetector, export_detector, torch_detections
from .files import decode_metadata, save_onnx
from .images import ImageInput, load_image
from .parity import (TOLERANCES, ParityCase, ParityReport, Tolerances, blank_image, builtin_classifier_cases,
                     builtin_detector_cases, run_classifier_parity, run_detector_parity, synthetic_image)
from .session import (CPU, CUDA, OnnxModelError, OnnxRuntimeSetupError, check_runtime_install, choose_providers,
                      open_session, providers_for_device)

__all__ = [
    "CPU", "CUDA", "ClassifierGraph", "DetectorGraph", "ImageInput", "OnnxClassifier", "OnnxDetector",
    "OnnxModelError", "OnnxRuntimeSetupError", "ParityCase", "ParityReport", "TOLERANCES", "Tolerances",
    "blank_image", "builtin_classifier_cases", "builtin_detector_cases", "check_runtime_install",
    "choose_providers", "decode_metadata", "default_class_names", "export_classifier", "export_d2_detector",
    "export_detector", "load_image", "open_session", "providers_for_device", "run_classifier_parity",
    "run_d2_parity", "run_detector_parity", "save_onnx", "synthetic_image", "torch_detections",
]
