#!/usr/bin/env python
"""``nasnet-zoo export-onnx`` from a checkout; the program and its help are in ``nasnet_zoo.cli.export_onnx``."""
import sys

from nasnet_zoo.cli.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
