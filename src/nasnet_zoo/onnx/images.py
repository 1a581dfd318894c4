"""Image input for the onnxruntime runners: paths, PIL images and uint8 arrays as one uint8 RGB array."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

_IMAGE_HINT = "pass a file path, a PIL image, or a uint8 numpy array of shape [H, W, 3] (RGB) or [H, W]"


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported image input as a contiguous uint8 RGB array [H, W, 3]."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert("RGB")).copy()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{path} is not a readable image ({err})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).copy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image array has dtype {image.dtype}; {_IMAGE_HINT} (floats in [0, 1]: "
                            "`(a * 255).round().astype(np.uint8)`)")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            hint = " (channels first? use `a.transpose(1, 2, 0)`)" if image.ndim == 3 and image.shape[0] in (3, 4) else ""
            raise ValueError(f"image array has shape {image.shape}{hint}; {_IMAGE_HINT}")
        return np.ascontiguousarray(image[:, :, :3])
    raise TypeError(f"unsupported image type {type(image).__name__}; {_IMAGE_HINT}")
