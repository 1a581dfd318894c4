"""Faster R-CNN detectors with NASNet backbones (installed as ``nasnet_zoo.detection``)."""
from .modeling.backbones import ConvRPNHead, NASNetBoxHead, NASNetFPNBackbone, NASNetRPNBackbone, ShapeSpec
from .modeling.builders import build_detector, list_detectors, register_detector
from .modeling.freeze import freeze_batchnorm, set_trainable_stages

__all__ = [
    "ConvRPNHead", "NASNetBoxHead", "NASNetFPNBackbone", "NASNetRPNBackbone", "ShapeSpec", "build_detector",
    "freeze_batchnorm", "list_detectors", "register_detector", "set_trainable_stages",
]
