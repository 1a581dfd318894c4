"""Training one child network on the proxy task: a small CIFAR-10 (or image-folder) NASNet, reward = validation
accuracy.

The validation images are held out of the *training* batches (the paper holds out 5,000), and the same split
is used for every child so that rewards are comparable. For an image folder they are held out of ``train/``
too, so that ``val/`` stays unseen for the final retraining, as CIFAR-10's test batch does. A loss that goes
NaN or a run past its time limit ends the child with reward 0 and the reason, so one bad architecture never
stops a search.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cifar import CIFAR10_CLASSES, check_cifar_dir, load_cifar10, train_val_split
from ..data.folder import list_classes, load_folder_images
from ..engine import NonFiniteLossError, SchedulerStep, TrainStep, amp_setting, autocast
from ..genotypes import Genotype
from ..factory import create_model
from .rewards import ChildResult

SEARCH_DATASETS = ("cifar10", "folder")


@dataclass
class ChildConfig:
    """The proxy-task budget: shrink it for a laptop, grow it towards the paper (20 epochs, 45k/5k) on a cluster."""

    epochs: int = 1
    train_size: int = 0          # training images used (0 = all that are not held out)
    val_size: int = 5000         # held out of the training batches
    num_conv_filters: int = 8    # base filter count F of the child (was ``filters``)
    cells: int = 2               # normal cells per stack (N = 2 in the paper)
    image_size: int = 32
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    time_limit_s: float = 600.0
    split_seed: int = 0
    amp: str = "auto"            # off | auto | fp16 | bf16; auto: float16 + grad scaler on CUDA, off on CPU
    #: old key -> field (config.py reads the old one with a FutureWarning)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"filters": "num_conv_filters"}

    def validate(self) -> None:
        self.amp = amp_setting(self.amp, "child.amp")
        for name in ("epochs", "val_size", "num_conv_filters", "cells", "image_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"child.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size < 0:
            raise ValueError(f"child.train_size must be >= 0 (0 = all), got {self.train_size}")
        if self.image_size < 4:
            raise ValueError(f"child.image_size must be >= 4 (two reductions), got {self.image_size}")
        if self.time_limit_s <= 0:
            raise ValueError(f"child.time_limit_s must be > 0, got {self.time_limit_s}")


def check_search_data(dataset: str, data_dir: str | Path) -> Path:
    """The data folder of a search, checked before any work: CIFAR-10's python layout or an image folder."""
    if dataset not in SEARCH_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(SEARCH_DATASETS)}")
    if not data_dir:
        where = "PATH/cifar-10-batches-py (the official python version)" if dataset == "cifar10" else \
            "PATH with train/<class>/*.jpg and val/<class>/*.jpg"
        raise ValueError(f"the search trains children on {dataset}: give --data-dir {where}")
    if dataset == "cifar10":
        return check_cifar_dir(data_dir)
    list_classes(data_dir)
    return Path(data_dir)


@dataclass
class ProxyData:
    """The search's images as normalized float tensors in [-1, 1], resized to the child's image size."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: tuple[str, ...] = CIFAR10_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def load(cls, data_dir: str | Path, config: ChildConfig, dataset: str = "cifar10") -> "ProxyData":
        """The training split of ``dataset`` (``"cifar10"`` or ``"folder"``) with ``config.val_size`` held out."""
        check_search_data(dataset, data_dir)
        if dataset == "cifar10":
            images, labels, classes = *load_cifar10(data_dir, "train"), CIFAR10_CLASSES
        else:
            classes = tuple(list_classes(data_dir))
            x, y = load_folder_images(data_dir, "train", list(classes), config.image_size)
            images, labels = x.numpy(), y.numpy()
        if config.val_size >= len(labels):
            raise ValueError(f"child.val_size={config.val_size} leaves no training images out of {len(labels)}")
        train_idx, val_idx = train_val_split(labels, config.val_size, seed=config.split_seed)
        if config.train_size:
            train_idx = train_idx[:config.train_size]

        def prepare(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.from_numpy(images[idx]).float().div_(127.5).sub_(1.0)
            if config.image_size != x.shape[-1]:
                x = F.interpolate(x, size=config.image_size, mode="bilinear", align_corners=False, antialias=True)
            return x, torch.from_numpy(labels[idx])

        (tx, ty), (vx, vy) = prepare(train_idx), prepare(val_idx)
        return cls(tx, ty, vx, vy, classes)


def build_child(genotype: Genotype, config: ChildConfig, num_classes: int = 10) -> torch.nn.Module:
    """The proxy task's network for ``genotype``: CIFAR stem, no auxiliary head, at the child's sizes."""
    return create_model(genotype, cells_per_stack=config.cells, num_conv_filters=config.num_conv_filters, stem="cifar",
                        num_classes=num_classes, image_size=config.image_size, aux_head=False)


def train_child(genotype: Genotype, data: ProxyData, config: ChildConfig, *, device: str | torch.device = "cpu",
                seed: int = 0) -> ChildResult:
    """SGD (momentum, weight decay, cosine schedule) on the training subset; reward = validation accuracy."""
    start = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_child(genotype, config, data.num_classes).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    steps_per_epoch = math.ceil(len(data.train_y) / config.batch_size)
    total = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    core = TrainStep(optimizer, device=device, amp=config.amp, hooks=[SchedulerStep(schedule)])
    generator = torch.Generator().manual_seed(seed)
    params = sum(p.numel() for p in model.parameters())

    def stop(status: str, reason: str) -> ChildResult:
        return ChildResult(0.0, status, reason, time.perf_counter() - start, {"params": params})

    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(data.train_y), generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            x, y = data.train_x[idx].to(device), data.train_y[idx].to(device)
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
            try:
                loss = core.run(lambda: F.cross_entropy(model(x), y))["loss"]
            except NonFiniteLossError as err:
                return stop("nan", f"training loss became {err.loss} at epoch {epoch} step {step}")
            if time.perf_counter() - start > config.time_limit_s:
                return stop("timeout", f"exceeded child.time_limit_s={config.time_limit_s:g}s at epoch {epoch} "
                                       f"step {step}")
    accuracy = evaluate_accuracy(model, data.val_x, data.val_y, device, config.batch_size * 4, core.amp_dtype)
    return ChildResult(accuracy, "ok", "", time.perf_counter() - start,
                       {"params": params, "loss": loss, "device": str(device)})


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                      batch_size: int, amp: torch.dtype | None) -> float:
    """Top-1 accuracy of ``model`` on ``x``, ``y`` in batches, under autocast to ``amp`` (None: none)."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        with autocast(device, amp):
            logits = model(x[i:i + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[i:i + batch_size]).sum())
    return correct / len(y)


class ProxyReward:
    """Picklable child evaluator for workers: loads the data once per process, then trains children."""

    def __init__(self, data_dir: str | Path, config: ChildConfig, dataset: str = "cifar10") -> None:
        config.validate()
        self.data_dir = str(data_dir)
        self.config = config
        self.dataset = dataset
        self._data: ProxyData | None = None

    def __getstate__(self) -> dict:
        return {"data_dir": self.data_dir, "config": self.config, "dataset": self.dataset, "_data": None}

    def __call__(self, genotype: Genotype, seed: int = 0, device: str = "cpu") -> ChildResult:
        if self._data is None:
            self._data = ProxyData.load(self.data_dir, self.config, self.dataset)
        return train_child(genotype, self._data, self.config, device=device, seed=seed)
