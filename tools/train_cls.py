#!/usr/bin/env python
"""``nasnet-zoo train-cls`` from a checkout; the program and its help are in ``nasnet_zoo.cli.train_cls``."""
import sys

from nasnet_zoo.cli.train_cls import main

if __name__ == "__main__":
    sys.exit(main())
