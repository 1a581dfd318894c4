"""Faster R-CNN detectors with NASNet backbones (installed as ``nasnet_zoo.detection``)."""
