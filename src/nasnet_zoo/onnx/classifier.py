"""``OnnxClassifier``: an exported nasnet-zoo classifier in onnxruntime, images in, top-k classes out."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .runtime import ImageInput, load_image, open_session


class OnnxClassifier:
    """Run an exported classifier on paths, PIL images or uint8 arrays of any size.

    ``providers=None`` picks CUDA when onnxruntime-gpu sees a GPU, else CPU; ``.providers`` reports what
    the session really runs; ``threads`` caps onnxruntime's intra-op threads.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        self.session, self.metadata = open_session(path, providers, task="classification", threads=threads)
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.model_name: str = self.metadata["model_name"]
        self._input = self.session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw logits for a uint8 batch [N, H, W, 3] (what the graph takes)."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            got = f"{images.dtype} array {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"logits() takes a uint8 batch [N, H, W, 3], got {got}; use the instance call for single images")
        return self.session.run(None, {self._input: images})[0]

    def __call__(self, image: ImageInput, topk: int = 5) -> list[dict[str, Any]]:
        """The ``topk`` most likely classes: ``{"index", "name", "probability"}``, most likely first."""
        logits = self.logits(load_image(image)[None])[0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[: max(1, min(topk, len(probs)))]
        return [{"index": int(i), "name": self.class_names[i], "probability": float(probs[i])} for i in order]
