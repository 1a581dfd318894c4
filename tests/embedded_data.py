"""Real images every clone has: scikit-learn's bundled digit scans, written in the layouts our loaders read."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


def write_digits_as_cifar(root: Path, train: int = 640, test: int = 200) -> Path:
    """scikit-learn's handwritten digits (1797 real 8x8 scans, 10 classes) upscaled to 32x32 grey-as-RGB, in
    CIFAR-10's python pickle layout (``data_batch_1..5``, ``test_batch``); ``train + test`` <= 1797."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    if train + test > len(digits.target):
        raise ValueError(f"only {len(digits.target)} digit scans: cannot hold {train} + {test}")
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = torch.from_numpy(digits.images[order] / 16.0).float()[:, None]
    images = torch.nn.functional.interpolate(images, size=32, mode="bilinear").repeat(1, 3, 1, 1)
    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8).numpy().reshape(-1, 3072)
    labels = digits.target[order].tolist()
    root.mkdir(parents=True)
    per = train // 5
    for i in range(5):
        with open(root / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({b"data": pixels[i * per:(i + 1) * per], b"labels": labels[i * per:(i + 1) * per]}, f)
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": pixels[-test:], b"labels": labels[-test:]}, f)
    return root
