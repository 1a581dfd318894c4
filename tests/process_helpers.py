"""Deterministic kill points for the resume tests: the run SIGKILLs itself right after logging a given step.

A test that polls the metrics log and then kills can lag past a checkpoint on a busy machine; a process that
kills itself inside ``MetricsLogger.log`` dies at exactly the logged step, whatever the machine's speed.
"""
from __future__ import annotations

import sys

_SELF_KILLING = """
import os, runpy, signal, sys
from nasnet_zoo.utils.metrics import MetricsLogger
log = MetricsLogger.log
def log_then_die(self, **record):
    log(self, **record)
    if record.get({key!r}) == {value!r} and "loss" in record:
        os.kill(os.getpid(), signal.SIGKILL)
MetricsLogger.log = log_then_die
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def killed_after_logging(script: str, args: list[str], key: str, value: int) -> list[str]:
    """The command that runs ``script args`` and SIGKILLs it once it has logged the record ``key == value``."""
    return [sys.executable, "-c", _SELF_KILLING.format(key=key, value=value), script, *args]
