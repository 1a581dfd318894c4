"""Settings of a classification training run, grouped detectron2-style; recipes in ``configs/cls/`` fill them.

Every field can be set from a YAML recipe (``--config-file``) or a trailing ``section.key value`` override.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from nasnet_zoo.config import ConfigError
from nasnet_zoo.configs import config_path
from nasnet_zoo.engine import amp_setting


@dataclass
class ModelSettings:
    name: str = "nasnet_a_cifar"        # registry name; ignored when ``genotype`` is set
    genotype: str = ""                  # genotype JSON, search top_genotypes.json or journal.jsonl
    rank: int = 1                       # which genotype of a search's ranking (1 = best, as in top_genotypes.json)
    cells_per_stack: int = 0            # N of "N @ F"; 0 keeps the registry model's own
    num_conv_filters: int = 0           # base filter count F (was ``filters``); 0 keeps the registry model's own
    stem: str = "cifar"                 # stem of a genotype-built network: "cifar" or "imagenet"
    stem_multiplier: float = 0.0        # 0 keeps the default of the stem / registry model
    drop_path_keep_prob: float = 0.0    # ScheduledDropPath final keep probability; 0 keeps the model's own
    aux_weight: float = 0.4             # auxiliary head loss weight (paper: 0.4); 0 removes the head
    pretrained: str = ""                # zoo weights tag or path to start from (fine-tuning / evaluation)
    weights: str = ""                   # .safetensors or checkpoint to load strictly (``--eval-only``)
    #: old key -> field (config.py reads the old one with a FutureWarning)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"filters": "num_conv_filters"}


@dataclass
class DataSettings:
    dataset: str = "cifar10"            # "cifar10" (python pickle layout) or "folder" (train/<class>/*.jpg)
    dir: str = ""
    image_size: int = 0                 # 0 uses the model's input size
    pad: int = 4                        # CIFAR: pad-and-crop margin
    cutout: int = 16                    # CIFAR: cutout square side, 0 disables
    min_scale: float = 0.08             # folder: RandomResizedCrop smallest area fraction
    crop_pct: float = 0.875             # folder: centre-crop fraction for evaluation
    workers: int = 0                    # DataLoader worker processes per training process


@dataclass
class SolverSettings:
    optimizer: str = "sgd"              # "sgd" or "rmsprop" (TensorFlow's RMSProp, as the paper used)
    lr: float = 0.025                   # for the whole (global) batch
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    rmsprop_decay: float = 0.9
    rmsprop_eps: float = 1.0
    schedule: str = "cosine"            # "cosine", "exponential" (staircase) or "constant"
    decay_epochs: float = 2.4           # exponential: decay every this many epochs
    decay_rate: float = 0.97            # exponential: by this factor
    warmup_steps: int = 0               # linear warm-up from 0 over these steps
    epochs: float = 10.0
    max_steps: int = 0                  # > 0 caps the run at this many steps (the schedule spans them)
    batch_size: int = 64                # global batch over all processes
    label_smoothing: float = 0.0
    clip_grad_norm: float = 5.0         # 0 disables
    ema_decay: float = 0.0              # > 0 keeps an exponential moving average of the weights
    amp: str = "auto"                   # off | auto | fp16 | bf16; auto: float16 + grad scaler on CUDA, off on CPU

    def __setattr__(self, name: str, value: object) -> None:
        if name == "amp":  # checked as it is set, so that a config file or override fails while loading
            try:
                value = amp_setting(value, "solver.amp")  # type: ignore[arg-type]
            except ValueError as err:
                raise ConfigError(str(err)) from None
        super().__setattr__(name, value)


@dataclass
class TrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    solver: SolverSettings = field(default_factory=SolverSettings)
    output_dir: str = "runs/cls"
    device: str = "auto"
    seed: int = 0
    log_period: int = 20                # steps between metrics lines
    eval_period: int = 0                # steps between evaluations; 0 evaluates at the end only
    checkpoint_period: int = 200        # steps between checkpoints (one rolling file, written atomically)
    channels_last: bool = True
    threads: int = 0                    # CPU intra-op threads; 0 keeps torch's default (1 helps on a busy machine)


def recipe_path(name_or_path: str) -> Path:
    """A recipe by name (``cifar`` -> the shipped ``cls/cifar.yaml``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    try:
        return config_path("cls", name_or_path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"unknown recipe {name_or_path!r} ({err}); or give a YAML path") from None


# Short names of the common settings: the CLI flags and ``retrain_top``'s budget keywords.
SHORTCUTS = {
    "data_dir": "data.dir", "dataset": "data.dataset", "image_size": "data.image_size",
    "epochs": "solver.epochs", "max_steps": "solver.max_steps", "batch_size": "solver.batch_size",
    "lr": "solver.lr", "model": "model.name", "genotype": "model.genotype", "rank": "model.rank",
    "cells_per_stack": "model.cells_per_stack", "num_conv_filters": "model.num_conv_filters",
    "filters": "model.filters",  # the old keyword: read as model.num_conv_filters with a FutureWarning
    "pretrained": "model.pretrained",
    "weights": "model.weights", "output_dir": "output_dir", "device": "device", "seed": "seed",
}


def shortcut_overrides(values: dict[str, object]) -> list[str]:
    """``{"epochs": 5}`` -> ``["solver.epochs", "5"]`` (None values are left out)."""
    unknown = sorted(set(values) - set(SHORTCUTS))
    if unknown:
        raise TypeError(f"unknown settings {unknown}; valid: {sorted(SHORTCUTS)} (or use KEY VALUE overrides)")
    return [item for key, value in values.items() if value is not None for item in (SHORTCUTS[key], str(value))]
