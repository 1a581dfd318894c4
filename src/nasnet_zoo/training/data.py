"""Training and evaluation batches for CIFAR-10 and image folders, sharded over processes.

A batch is addressed by its global step: the epoch's sample order comes from (seed, epoch) and each sample's
augmentation from (seed, epoch, index), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.cifar import CIFAR10_CLASSES, check_cifar_dir, load_cifar10
from ..data.folder import list_classes, list_samples
from . import transforms as tr
from .config import DataSettings

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class AugmentedDataset(Dataset):
    """Indexed by ``(epoch, index)``; applies ``transform`` under that sample's own seed."""

    def __init__(self, load: Callable[[int], Any], labels: Sequence[int], transform: Callable, seed: int) -> None:
        self.load, self.labels, self.transform, self.seed = load, labels, transform, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tr.sample_seed(self.seed, epoch, index))
            image = self.transform(self.load(index))
        return image, int(self.labels[index])


@dataclass
class ClassificationData:
    """The two splits of a data set with what a model needs to know about them."""

    train: AugmentedDataset
    eval: AugmentedDataset
    num_classes: int
    classes: list[str]
    dataset: str          # the name a manifest records ("cifar-10", or the folder's name)
    eval_split: str       # which split ``eval`` is: CIFAR's "test" batch or the folder's "val"
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS = ("cifar10", "folder")


def check_data_settings(settings: DataSettings) -> None:
    if not settings.dir:
        raise ValueError("no data folder given: pass --data-dir (data.dir)")
    if settings.dataset not in DATASETS:
        raise ValueError(f"unknown data.dataset {settings.dataset!r}; use one of {DATASETS}")


def dataset_classes(settings: DataSettings) -> int:
    """Class count of the data set, checking its layout early (before a model is built)."""
    check_data_settings(settings)
    if settings.dataset == "cifar10":
        check_cifar_dir(settings.dir)
        return len(CIFAR10_CLASSES)
    return len(list_classes(settings.dir))


def build_data(settings: DataSettings, *, mean: Sequence[float] | None, std: Sequence[float] | None,
               image_size: int, interpolation: str = "bilinear", seed: int = 0) -> ClassificationData:
    """Read and check the data set named by ``settings``; fails with a layout error before training starts."""
    check_data_settings(settings)
    if settings.dataset == "cifar10":
        mean, std = mean or CIFAR_MEAN, std or CIFAR_STD
        train_x, train_y = load_cifar10(settings.dir, "train")
        test_x, test_y = load_cifar10(settings.dir, "test")
        train_images, test_images = torch.from_numpy(train_x), torch.from_numpy(test_x)
        train_tf = tr.cifar_train_transform(mean, std, image_size=train_x.shape[-1], pad=settings.pad,
                                            cutout=settings.cutout)
        eval_tf = tr.cifar_eval_transform(mean, std)
        return ClassificationData(
            AugmentedDataset(train_images.__getitem__, train_y, train_tf, seed),
            AugmentedDataset(test_images.__getitem__, test_y, eval_tf, seed),
            len(CIFAR10_CLASSES), list(CIFAR10_CLASSES), "cifar-10", "test", tuple(mean), tuple(std))
    mean, std = mean or (0.5, 0.5, 0.5), std or (0.5, 0.5, 0.5)
    classes = list_classes(settings.dir)
    train, val = list_samples(settings.dir, "train", classes), list_samples(settings.dir, "val", classes)
    train_tf = tr.imagenet_train_transform(mean, std, image_size=image_size, min_scale=settings.min_scale,
                                           interpolation=interpolation)
    eval_tf = tr.imagenet_eval_transform(mean, std, image_size=image_size, crop_pct=settings.crop_pct,
                                         interpolation=interpolation)
    return ClassificationData(
        AugmentedDataset(ImageFiles([p for p, _ in train]), [c for _, c in train], train_tf, seed),
        AugmentedDataset(ImageFiles([p for p, _ in val]), [c for _, c in val], eval_tf, seed),
        len(classes), classes, Path(settings.dir).resolve().name, "val", tuple(mean), tuple(std))


class ImageFiles:
    """Loads image ``i`` of a file list as RGB (a picklable callable, for DataLoader workers)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __call__(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Full global batches per epoch (the ragged tail is dropped so every process steps together)."""
    if batch_size % world_size:
        raise ValueError(f"solver.batch_size {batch_size} must be divisible by the {world_size} processes")
    steps = num_samples // batch_size
    if steps == 0:
        raise ValueError(f"solver.batch_size {batch_size} is larger than the {num_samples} training images")
    return steps


def epoch_batches(num_samples: int, batch_size: int, *, seed: int, epoch: int, rank: int,
                  world_size: int) -> list[list[tuple[int, int]]]:
    """This process's share of every global batch of one epoch, as ``(epoch, index)`` keys."""
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    per_rank = batch_size // world_size
    steps = steps_per_epoch(num_samples, batch_size, world_size)
    return [[(epoch, int(i)) for i in order[s * batch_size + rank * per_rank:s * batch_size + (rank + 1) * per_rank]]
            for s in range(steps)]


def train_batches(dataset: AugmentedDataset, batch_size: int, *, start_step: int, seed: int, rank: int,
                  world_size: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless training batches for this process from global step ``start_step`` on."""
    per_epoch = steps_per_epoch(len(dataset), batch_size, world_size)
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        batches = epoch_batches(len(dataset), batch_size, seed=seed, epoch=epoch, rank=rank,
                                world_size=world_size)[offset:]
        yield from DataLoader(dataset, batch_sampler=batches, num_workers=workers, generator=_own_generator(epoch),
                              pin_memory=torch.cuda.is_available())
        epoch, offset = epoch + 1, 0


def eval_batches(dataset: AugmentedDataset, batch_size: int, *, rank: int, world_size: int,
                 workers: int) -> DataLoader:
    """This process's disjoint share of the evaluation split (all shards together cover it once)."""
    keys = [(0, i) for i in range(rank, len(dataset), world_size)]
    batches = [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, generator=_own_generator(0),
                      pin_memory=torch.cuda.is_available())


def _own_generator(seed: int) -> torch.Generator:
    """A DataLoader draws its worker seed from this instead of the global RNG, which would otherwise shift the
    drop-path masks whenever a loader starts (and so differ between a resumed and an uninterrupted run)."""
    return torch.Generator().manual_seed(seed)
