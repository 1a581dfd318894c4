"""The shipped YAML settings (search, classifier recipes, detection, detectron2), installed as package data.

``configs/`` at the top of a clone is a link to this folder, so ``--config-file configs/det/demo.yaml`` works
from a checkout and ``config_path("det", "demo")`` works from a wheel.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent


def config_path(group: str, name: str) -> Path:
    """Path of ``<group>/<name>.yaml`` among the shipped configs; a clear error lists what exists."""
    folder = CONFIG_ROOT / group
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped config {group}/{name}.yaml; known in {group}/: {', '.join(known) or 'none'}")
    return path
