#!/usr/bin/env python
"""``nasnet-zoo search`` from a checkout; the program and its help are in ``nasnet_zoo.cli.search``."""
import sys

from nasnet_zoo.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
