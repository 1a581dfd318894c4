#!/usr/bin/env python
"""What a model is (config, params, mult-adds, feature levels, weights): ``nasnet_zoo.cli.info`` (``nasnet-zoo info``)."""
import sys

from nasnet_zoo.cli.info import main

if __name__ == "__main__":
    sys.exit(main())
