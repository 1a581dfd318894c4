"""detectron2 stays optional: importing nasnet_zoo (detection included) never imports it."""
from __future__ import annotations

import subprocess
import sys


def test_nasnet_zoo_imports_without_detectron2() -> None:
    code = ("import sys, nasnet_zoo, nasnet_zoo.detection; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'detectron2'); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
