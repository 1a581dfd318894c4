"""Augmentation per recipe: CIFAR pad-crop + flip + cutout, ImageNet random-resized-crop + flip.

Each sample's randomness comes from a seed derived from (run seed, epoch, index), so a batch is the same
whatever the worker count, process count or a resume in the middle of an epoch.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision import transforms as T


class Cutout:
    """Zero one square (after normalisation) centred anywhere in the image, clipped at the border (DeVries 2017)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cutout size must be >= 0, got {size}")
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return image
        h, w = image.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.size // 2
        image = image.clone()
        image[..., max(cy - half, 0):cy - half + self.size, max(cx - half, 0):cx - half + self.size] = 0
        return image


def _to_float(image: torch.Tensor) -> torch.Tensor:
    return image.float().div_(255)


def cifar_train_transform(mean: Sequence[float], std: Sequence[float], *, image_size: int = 32, pad: int = 4,
                          cutout: int = 16) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 CHW tensor -> augmented normalised float tensor."""
    steps: list[Callable] = [T.RandomCrop(image_size, padding=pad)] if pad else []
    return T.Compose(steps + [T.RandomHorizontalFlip(), _to_float, T.Normalize(mean, std), Cutout(cutout)])


def cifar_eval_transform(mean: Sequence[float], std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    return T.Compose([_to_float, T.Normalize(mean, std)])


def imagenet_train_transform(mean: Sequence[float], std: Sequence[float], *, image_size: int,
                             min_scale: float = 0.08, interpolation: str = "bilinear") -> Callable:
    """PIL image -> random-resized-crop, flip, normalised float tensor."""
    mode = T.InterpolationMode(interpolation)
    return T.Compose([T.RandomResizedCrop(image_size, scale=(min_scale, 1.0), interpolation=mode),
                      T.RandomHorizontalFlip(), T.PILToTensor(), _to_float, T.Normalize(mean, std)])


def imagenet_eval_transform(mean: Sequence[float], std: Sequence[float], *, image_size: int,
                            crop_pct: float = 0.875, interpolation: str = "bilinear") -> Callable:
    """PIL image -> resize the short side to size / crop_pct, centre crop, normalised float tensor."""
    mode = T.InterpolationMode(interpolation)
    return T.Compose([T.Resize(int(round(image_size / crop_pct)), interpolation=mode), T.CenterCrop(image_size),
                      T.PILToTensor(), _to_float, T.Normalize(mean, std)])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct 63-bit seed per (run, epoch, sample)."""
    return (seed * 1_000_003 + epoch) * 2_147_483_647 + index & 0x7FFF_FFFF_FFFF_FFFF

