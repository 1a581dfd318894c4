#!/usr/bin/env python
"""Run a trained detector on photos: ``nasnet_zoo.cli.predict_det`` (``nasnet-zoo predict-det``)."""
import sys

from nasnet_zoo.cli.predict_det import main

if __name__ == "__main__":
    sys.exit(main())
