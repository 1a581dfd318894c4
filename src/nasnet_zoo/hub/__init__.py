"""Pretrained weights by name: the manifest (:mod:`.manifest`), the cache and checked downloads
(:mod:`.download`), fitting a state dict to a model (:mod:`.fitting`), and loading (:mod:`.loading`)."""
from __future__ import annotations

from .download import cache_dir, extract_dir, fetch
from .fitting import guess_architecture, identify, load_fitted
from .loading import load_pretrained, load_state_dict, resolve
from .manifest import Weights, default_weights, get_weights, list_weights, load_manifest, manifest_entry, \
    weights_for_model

__all__ = ["Weights", "cache_dir", "default_weights", "extract_dir", "fetch", "get_weights", "guess_architecture",
           "identify", "list_weights", "load_fitted", "load_manifest", "load_pretrained",
           "load_state_dict", "manifest_entry", "resolve", "weights_for_model"]
