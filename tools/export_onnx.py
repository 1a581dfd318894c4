#!/usr/bin/env python
"""Export a classifier or detector to ONNX and check parity: ``nasnet_zoo.cli.export_onnx`` (``nasnet-zoo export-onnx``)."""
import sys

from nasnet_zoo.cli.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
