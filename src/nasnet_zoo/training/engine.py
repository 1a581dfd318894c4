"""The training loop: ScheduledDropPath progress every step, auxiliary loss, label smoothing, EMA, DDP under
torchrun, periodic evaluation, atomic checkpoints and an exported final model. AMP, clipping and the
non-finite loss guard are the shared step's (:mod:`nasnet_zoo.engine`)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..config import dump_config
from ..engine import NonFiniteLossError, SchedulerStep, StepHook, TrainStep, autocast, resolve_amp
from ..nasnet import NASNet
from ..nasnet import nasnet_identity
from ..utils import checkpoint as ckpt
from ..utils.distributed import DistInfo, all_reduce_mean, cleanup_distributed, init_distributed
from ..utils.metrics import MetricsLogger
from ..utils.run_lock import is_main_process, lock_run_folder
from ..utils.seeding import seed_everything
from .config import TrainConfig
from .data import ClassificationData, build_data, dataset_classes, eval_batches, steps_per_epoch, train_batches
from .export import export_run, load_weights
from .model import build_model
from .optim import build_optimizer, build_scheduler

EVAL_BATCH_SIZE = 100
WRITER = "tools/train_cls.py"


@dataclass
class Setup:
    """What both training and evaluation need: the process, the model and the data."""

    info: DistInfo
    device: torch.device
    model: NASNet
    origin: dict[str, Any]
    data: ClassificationData
    input_cfg: dict[str, Any]


def prepare(cfg: TrainConfig) -> Setup:
    """Check the data, build the model (and load weights) and the data pipeline; all errors surface here."""
    info, device = init_distributed(cfg.device)
    num_classes = dataset_classes(cfg.data)
    seed_everything(cfg.seed)  # same initial weights on every process and every run with this seed
    image_size = cfg.data.image_size
    if cfg.data.dataset == "cifar10":
        if image_size not in (0, 32):
            raise ValueError(f"CIFAR-10 images are 32x32; --image-size {image_size} applies to folder data sets only")
        image_size = 32
    model, origin = build_model(cfg.model, num_classes=num_classes, image_size=image_size)
    if cfg.model.weights:
        load_weights(model, cfg.model.weights)
    pre = model.pretrained_cfg
    data = build_data(cfg.data, mean=pre.get("mean"), std=pre.get("std"), image_size=model.config.image_size,
                      interpolation=pre.get("interpolation", "bilinear"), seed=cfg.seed)
    input_cfg = {"input_size": [model.config.in_chans, model.config.image_size, model.config.image_size],
                 "mean": list(data.mean), "std": list(data.std),
                 "crop_pct": cfg.data.crop_pct if cfg.data.dataset == "folder" else 1.0,
                 "interpolation": pre.get("interpolation", "bilinear")}
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return Setup(info, device, model, origin, data, input_cfg)


def _to_device(images: torch.Tensor, setup: Setup, channels_last: bool) -> torch.Tensor:
    images = images.to(setup.device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@torch.no_grad()
def evaluate(model: nn.Module, setup: Setup, cfg: TrainConfig) -> dict[str, float]:
    """Top-1 / top-5 (percent) and mean loss over the whole evaluation split, shards summed over processes."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=setup.device)  # correct1, correct5, loss sum, count
    amp = resolve_amp(cfg.solver.amp, setup.device)
    loader = eval_batches(setup.data.eval, EVAL_BATCH_SIZE, rank=setup.info.rank,
                          world_size=setup.info.world_size, workers=cfg.data.workers)
    for images, labels in loader:
        images, labels = _to_device(images, setup, cfg.channels_last), labels.to(setup.device)
        with autocast(setup.device, amp):
            logits = model(images).float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        totals += torch.stack([(top5[:, 0] == labels).sum(), (top5 == labels[:, None]).any(1).sum(),
                               nn.functional.cross_entropy(logits, labels, reduction="sum"),
                               torch.tensor(len(labels), device=setup.device)]).double()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    correct1, correct5, loss, count = totals.tolist()
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "eval_loss": loss / count}


def total_steps(cfg: TrainConfig, per_epoch: int) -> int:
    steps = max(1, int(round(cfg.solver.epochs * per_epoch)))
    return min(steps, cfg.solver.max_steps) if cfg.solver.max_steps > 0 else steps


class EmaUpdate(StepHook):
    """Updates the exponential moving average of the weights after every step."""

    def __init__(self, ema: AveragedModel, model: nn.Module) -> None:
        self.ema, self.model = ema, model

    def after_step(self, step: TrainStep, metrics: dict[str, float]) -> None:
        self.ema.update_parameters(self.model)


class Trainer:
    """One training run in ``cfg.output_dir``; ``run()`` trains to the last step and exports the model."""

    def __init__(self, cfg: TrainConfig, setup: Setup, *, resume: bool) -> None:
        self.cfg, self.setup = cfg, setup
        self.out = Path(cfg.output_dir)
        info, solver = setup.info, cfg.solver
        self.checkpoint_path = self.out / ckpt.CHECKPOINT_NAME
        if self.checkpoint_path.exists() and not resume:
            raise FileExistsError(f"{self.out} already holds a run ({ckpt.CHECKPOINT_NAME}); pass --resume to "
                                  "continue it or choose another --output-dir")
        self.per_epoch = steps_per_epoch(len(setup.data.train), solver.batch_size, info.world_size)
        self.total = total_steps(cfg, self.per_epoch)
        self.model = setup.model
        self.optimizer = build_optimizer(self.model.parameters(), solver)
        self.scheduler = build_scheduler(self.optimizer, solver, total_steps=self.total,
                                         steps_per_epoch=self.per_epoch)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(solver.ema_decay), use_buffers=True) \
            if solver.ema_decay > 0 else None
        hooks: list[StepHook] = [SchedulerStep(self.scheduler)]
        if self.ema is not None:
            hooks.append(EmaUpdate(self.ema, self.model))
        self.core = TrainStep(self.optimizer, device=setup.device, amp=solver.amp, grad_clip=solver.clip_grad_norm,
                              params=self.model.parameters(), reduce=all_reduce_mean, hooks=hooks)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=solver.label_smoothing)
        self.start_step = 0
        if resume and self.checkpoint_path.exists():
            self._restore()
        else:
            seed_everything(cfg.seed + 1000 * info.rank)  # per-process drop-path masks
        self.net: nn.Module = self.model
        if info.distributed:
            ids = [setup.device.index] if setup.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.metrics = MetricsLogger(self.out, enabled=info.is_main)

    def _restore(self) -> None:
        state = ckpt.load_checkpoint(self.checkpoint_path, self.model, nasnet_identity(self.model),
                                     written_by=WRITER, optional=("aux_head.",))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.core.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        rank, rngs = self.setup.info.rank, state["rng"]
        if len(rngs) == self.setup.info.world_size:
            ckpt.set_rng_state(rngs[rank])
        else:  # another process count than the killed run: a fresh, distinct stream per process
            seed_everything(self.cfg.seed + 1000 * rank + state["step"])
        self.start_step = int(state["step"])

    def _save(self, step: int) -> None:
        rngs = [ckpt.rng_state()]
        if self.setup.info.distributed:
            rngs = [None] * self.setup.info.world_size
            dist.all_gather_object(rngs, ckpt.rng_state())
        if self.setup.info.is_main:
            ckpt.save_checkpoint(self.checkpoint_path, {  # everything to continue at ``step`` as if never stopped
                "step": step, "architecture": nasnet_identity(self.model), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.core.scaler.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rngs})

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = self.setup.info
        return train_batches(self.setup.data.train, self.cfg.solver.batch_size, start_step=self.start_step,
                             seed=self.cfg.seed, rank=info.rank, world_size=info.world_size,
                             workers=self.cfg.data.workers)

    def train_step(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step at ``step`` (0-based); returns its metrics (the loss averaged over processes)."""
        self.model.set_drop_path_progress(step / self.total)
        self.net.train()
        images, labels = _to_device(images, self.setup, self.cfg.channels_last), labels.to(self.setup.device)

        def loss() -> torch.Tensor:
            out = self.net(images)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            value = self.criterion(logits.float(), labels)
            return value if aux is None else value + self.cfg.model.aux_weight * self.criterion(aux.float(), labels)
        try:
            return self.core.run(loss)
        except NonFiniteLossError as err:
            raise FloatingPointError(f"{err} at step {step}: lower solver.lr (now {self.cfg.solver.lr}) or set "
                                     "solver.clip_grad_norm") from None

    def run(self) -> dict[str, Any]:
        cfg, info = self.cfg, self.setup.info
        if info.is_main and self.start_step == 0:
            dump_config(cfg, self.out / "config.yaml")
        batches = self._batches()
        bar = tqdm(total=self.total, initial=self.start_step, desc="train", disable=not info.is_main,
                   dynamic_ncols=True)
        keep0 = self.model.config.drop_path_keep_prob
        for step in range(self.start_step, self.total):
            images, labels = next(batches)
            stats = self.train_step(step, images, labels)
            done = step + 1
            bar.update(1)
            if done % cfg.log_period == 0 or done == self.total:
                bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.3g}")
                self.metrics.log(step=done, epoch=step / self.per_epoch, loss=stats["loss"], lr=stats["lr"],
                                 grad_norm=stats["grad_norm"],
                                 drop_path_keep=1.0 - (1.0 - keep0) * step / self.total)  # deepest cell
            if cfg.eval_period > 0 and done % cfg.eval_period == 0 and done != self.total:
                self.metrics.log(step=done, **self.evaluations())
            if done % cfg.checkpoint_period == 0 or done == self.total:
                self._save(done)
        bar.close()
        final = {"step": self.total, **self.evaluations()}
        self.metrics.log(**final)
        if info.is_main:
            export_run(self.exported_model(), self.out, registry_name=self.setup.origin["model"],
                       dataset=self.setup.data.dataset, eval_split=self.setup.data.eval_split,
                       input_cfg=self.setup.input_cfg,
                       metrics={k: round(final[k], 3) for k in ("top1", "top5")},
                       run_name=self.out.resolve().name.replace(".", "_"))
        self.metrics.close()
        return {**final, "params": sum(p.numel() for p in self.model.parameters()), **self.setup.origin}

    def exported_model(self) -> NASNet:
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def evaluations(self) -> dict[str, float]:
        """Metrics of the exported model (the EMA when enabled), plus the raw weights' top-1 beside an EMA."""
        result = evaluate(self.exported_model(), self.setup, self.cfg)
        if self.ema is not None:
            result["top1_raw"] = evaluate(self.model, self.setup, self.cfg)["top1"]
        return result


@contextmanager
def _run_context(cfg: TrainConfig) -> Iterator[None]:
    """CPU thread count for this run (restored afterwards) and the process group's teardown."""
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cleanup_distributed()


def train(cfg: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train (or continue, with ``resume``) the run ``cfg`` describes; returns the final metrics.

    The output folder is locked first (:mod:`nasnet_zoo.utils.run_lock`): a second run there fails at once.
    """
    with lock_run_folder(cfg.output_dir, enabled=is_main_process()), _run_context(cfg):
        return Trainer(cfg, prepare(cfg), resume=resume).run()


def evaluate_only(cfg: TrainConfig) -> dict[str, float]:
    """Evaluate ``model.weights`` (or ``model.pretrained``) on the data set's evaluation split."""
    if not cfg.model.weights and not cfg.model.pretrained:
        raise ValueError("--eval-only needs --weights FILE (or --pretrained TAG) to evaluate")
    with lock_run_folder(cfg.output_dir, enabled=is_main_process()), _run_context(cfg):
        setup = prepare(cfg)
        result = evaluate(setup.model, setup, cfg)
        MetricsLogger(cfg.output_dir, enabled=setup.info.is_main, tensorboard=False).log(step=0, **result)
        return result
