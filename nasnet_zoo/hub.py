"""Pretrained weights: manifest, local cache, download, conversion. (Being written; see issue 2.)"""
from __future__ import annotations

from torch import nn


def weights_for_model(model_name: str) -> list[str]:
    return []


def load_pretrained(model: nn.Module, weight: str | None, *, model_name: str) -> None:
    raise NotImplementedError("pretrained weights are not wired yet")
