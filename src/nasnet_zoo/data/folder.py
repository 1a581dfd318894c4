"""ImageNet-style class folders: ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*.jpg``.

Classes are the sorted sub-folder names of ``train``; ``val`` must use the same names (a subset is fine).
Layout problems are reported before any training starts, with what was found and what is expected.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import UnidentifiedImageError
from torchvision import transforms
from torchvision.datasets import ImageFolder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "val")


class FolderLayoutError(ValueError):
    """A folder that is not the ``train/<class>/*.jpg`` + ``val/<class>/*.jpg`` layout."""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_classes(root: str | Path) -> list[str]:
    """Class names (sorted sub-folders of ``train``), checking both splits."""
    root = Path(root)
    expected = f"expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg"
    if not root.is_dir():
        raise FolderLayoutError(f"image folder {root} does not exist; {expected}")
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise FolderLayoutError(f"{root} has no {' or '.join(missing)} folder; {expected}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        loose = _images(root / "train")
        found = f" (it holds {len(loose)} images directly: move each into a folder named by its class)" if loose else ""
        raise FolderLayoutError(f"{root}/train has no class sub-folders{found}; {expected}")
    empty = [c for c in classes if not _images(root / "train" / c)]
    if empty:
        raise FolderLayoutError(f"{root}/train: class folders without images ({', '.join(empty[:5])}); "
                                f"each class needs at least one of {', '.join(IMAGE_SUFFIXES)}")
    unknown = sorted(p.name for p in (root / "val").iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise FolderLayoutError(f"{root}/val has classes that train lacks: {', '.join(unknown[:5])}; "
                                "val must use the train class names")
    return classes


def list_samples(root: str | Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    """(image path, class index) pairs of one split, in a stable order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / split
    samples = [(path, index) for index, name in enumerate(classes) if (folder / name).is_dir()
               for path in _images(folder / name)]
    if not samples:
        raise FolderLayoutError(f"{folder} holds no images in class folders; expected {folder}/<class>/*.jpg")
    return samples


class _FixedClassFolder(ImageFolder):
    """``ImageFolder`` over one split with the class list of ``train``, so that a ``val`` holding a subset of the
    classes keeps the same label indices."""

    def __init__(self, root: Path, classes: list[str], transform: transforms.Compose) -> None:
        self._classes = classes
        super().__init__(str(root), transform=transform, allow_empty=True,
                         is_valid_file=lambda path: Path(path).suffix.lower() in IMAGE_SUFFIXES)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._classes, {name: index for index, name in enumerate(self._classes)}


def load_folder_images(root: str | Path, split: str, classes: list[str],
                       image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of one split decoded once into memory: uint8 ``[N, 3, S, S]`` and int64 labels.

    Each image is converted to RGB, resized so its shorter side is ``image_size`` and centre-cropped to a
    square. Meant for search-sized data sets (N x 3 x S x S bytes: 10,000 images at 32 px take 31 MB).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / split
    resize = transforms.Compose([transforms.Resize(image_size, antialias=True), transforms.CenterCrop(image_size),
                                 transforms.PILToTensor()])
    dataset = _FixedClassFolder(folder, classes, resize)
    if not dataset.samples:
        raise FolderLayoutError(f"{folder} holds no images in class folders; expected {folder}/<class>/*.jpg")
    images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
    for i, (path, _) in enumerate(dataset.samples):
        try:
            images[i] = dataset[i][0]
        except (UnidentifiedImageError, OSError) as err:
            raise FolderLayoutError(f"{path} cannot be read as an image ({err}); remove or replace it") from None
    return images, torch.tensor(dataset.targets, dtype=torch.int64)
