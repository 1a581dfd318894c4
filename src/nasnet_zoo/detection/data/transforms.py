"""Training-time augmentation on (image, target) pairs. Resizing lives in the model's transform
(``min_size`` given as several sizes draws one per batch: multi-scale training)."""
from __future__ import annotations

import torch


class RandomHorizontalFlip:
    """Mirror the image and its boxes with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        if torch.rand(()) < self.p:
            image = image.flip(-1)
            width = image.shape[-1]
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target = {**target, "boxes": boxes}
        return image, target
