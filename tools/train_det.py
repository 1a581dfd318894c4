#!/usr/bin/env python
"""``nasnet-zoo train-det`` from a checkout; the program and its help are in ``nasnet_zoo.cli.train_det``."""
import sys

from nasnet_zoo.cli.train_det import main

if __name__ == "__main__":
    sys.exit(main())
