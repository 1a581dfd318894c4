"""Run configuration of ``tools/train_det.py`` (YAML in ``configs/det/`` + ``KEY VALUE`` overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasnet_zoo.engine import amp_setting

from .data.demo_data import DigitsCanvases
from .modeling.norms import resolve_frozen_bn


@dataclass
class ModelConfig:
    name: str = "fasterrcnn_nasnet_a_mobile_fpn"
    #: weight tag (``nasnet_a_mobile.tf_in1k``) or file of NASNet classifier weights; "" trains from scratch
    backbone_weights: str = ""
    #: NASNetConfig overrides for the backbone (``cells_per_stack``, ``num_conv_filters``, ...)
    backbone_args: dict[str, Any] = field(default_factory=dict)
    #: JSON file of a searched genotype, for the generic ``fasterrcnn_nasnet_fpn`` / ``_nas`` builders
    genotype: str = ""
    #: FrozenBN (pretrained weights), BN, SyncBN (DDP on GPUs) or GN (from scratch); see detection/modeling/norms.py
    norm: str = "FrozenBN"
    #: GroupNorm groups: a layer of C channels gets the largest divisor of C that is <= gn_groups
    gn_groups: int = 32
    #: deprecated spelling of norm: true = FrozenBN, false = BN (read into norm, then cleared)
    frozen_bn: bool | None = None
    trainable_stages: int = 3
    #: other ``build_detector`` options (fpn_channels, anchor_sizes, box_head_dim, box_batch_size_per_image, ...)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputConfig:
    #: shorter-side sizes; training draws one per batch (multi-scale), evaluation uses the last
    min_size: list[int] = field(default_factory=lambda: [800])
    max_size: int = 1333
    hflip_prob: float = 0.5


@dataclass
class DataConfig:
    train_images: str = ""
    train_ann: str = ""
    val_images: str = ""
    val_ann: str = ""
    #: train on images that have no (non-crowd) boxes as pure background
    keep_empty: bool = False
    #: use only these image ids of both sets (e.g. the overfit check: a handful of train images as val too)
    image_ids: list[int] = field(default_factory=list)
    aspect_ratio_grouping: bool = True
    num_workers: int = 2
    #: decode every train and val image before training and list all unreadable ones at once
    check_images: bool = False
    #: an image that fails to decode during training is replaced by the next one and counted
    #: (``skipped_images`` in the log and metrics.jsonl); false: stop with the file named
    skip_bad_images: bool = False


@dataclass
class SolverConfig:
    max_iter: int = 90000
    ims_per_batch: int = 2  # per process
    base_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "step"  # "step" or "cosine"
    steps: list[int] = field(default_factory=lambda: [60000, 80000])
    gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    clip_grad_norm: float = 0.0  # 0 disables clipping
    amp: str = "auto"  # off | auto | fp16 | bf16; auto: float16 + grad scaler on CUDA, off on CPU
    checkpoint_period: int = 5000
    log_period: int = 20


@dataclass
class PreciseBNConfig:
    #: recompute BatchNorm statistics before each evaluation and the final save; acts only when BN trains
    #: (model.norm BN or SyncBN)
    enabled: bool = True
    num_iter: int = 200  # training batches per recomputation


@dataclass
class TestConfig:
    eval_period: int = 0  # 0: evaluate at the end only
    precise_bn: PreciseBNConfig = field(default_factory=PreciseBNConfig)
    vis: int = 0  # number of val images to draw
    vis_score_thresh: float = 0.5
    detections_per_img: int = 100
    #: RPN proposals kept per image at test time (0: the detector's own setting, torchvision's 1000). Like TF's
    #: ``faster_rcnn_nas_lowproposals``: fewer proposals, much less second-stage work (docs/detection.md)
    proposals: int = 0


@dataclass
class DemoConfig(DigitsCanvases):
    """The embedded dataset (used when no data is given; its fields come first) and its seconds-long backbone
    pretraining."""

    pretrain_steps: int = 300
    pretrain_batch: int = 32


@dataclass
class DetConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    output_dir: str = "runs/det"
    device: str = "auto"
    seed: int = 0
    #: CPU threads for torch (0: torch's default). On a CPU shared with other jobs, 1 thread per process
    #: avoids stalls at every parallel op (measured 10x faster per iteration at load 10 on 2 cores).
    threads: int = 0

    def validate(self) -> None:
        self.model.norm = resolve_frozen_bn(self.model.norm, self.model.frozen_bn, norm_key="model.norm",
                                            frozen_key="model.frozen_bn")
        self.model.frozen_bn = None  # read into model.norm; the saved config holds norm alone
        self.solver.amp = amp_setting(self.solver.amp, "solver.amp")
        if self.model.gn_groups < 1:
            raise ValueError(f"model.gn_groups must be >= 1, got {self.model.gn_groups}")
        if self.test.precise_bn.num_iter < 0:
            raise ValueError(f"test.precise_bn.num_iter must be >= 0, got {self.test.precise_bn.num_iter}")
        if self.solver.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"solver.lr_schedule must be 'step' or 'cosine', got {self.solver.lr_schedule!r}")
        if self.solver.max_iter < 1 or self.solver.ims_per_batch < 1:
            raise ValueError("solver.max_iter and solver.ims_per_batch must be positive")
        if not self.input.min_size:
            raise ValueError("input.min_size needs at least one size")
        given = [bool(getattr(self.data, k)) for k in ("train_images", "train_ann", "val_images", "val_ann")]
        if any(given[:2]) and not all(given[:2]):
            raise ValueError("give both --train-images and --train-ann (or neither, for the embedded demo data)")
        if any(given[2:]) and not all(given[2:]):
            raise ValueError("give both --val-images and --val-ann")
