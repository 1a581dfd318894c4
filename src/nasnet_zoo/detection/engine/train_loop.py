"""Iteration-based training of torchvision detectors: SGD with warmup, DDP, atomic checkpoints, exact resume,
COCO evaluation and pictures at the end. AMP, clipping and the NaN guard are the shared step's
(:mod:`nasnet_zoo.engine`)."""
from __future__ import annotations

import bisect
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from nasnet_zoo.engine import NonFiniteLossError, SchedulerStep, TrainStep
from nasnet_zoo.utils.checkpoint import CHECKPOINT_NAME, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from nasnet_zoo.utils.distributed import DistInfo, all_reduce_mean
from nasnet_zoo.utils.io import atomic_write_json
from nasnet_zoo.utils.metrics import MetricsLogger

from ..config import SolverConfig
from ..data.coco import CocoDetection, collate
from ..data.samplers import GroupedBatchSampler, aspect_ratio_groups
from ..evaluation.coco_evaluation import coco_evaluate, format_metrics, predict
from ..evaluation.visualize import save_visualizations
from .precise_bn import recompute_bn_stats

log = logging.getLogger(__name__)

FINAL_NAME = "model_final.pth"  # the trained detector's weights (and identity), for --eval-only and export


def lr_factor(iteration: int, solver: SolverConfig) -> float:
    """Linear warmup from ``warmup_factor`` to 1, then step decay or cosine to 0."""
    if iteration < solver.warmup_iters:
        alpha = iteration / solver.warmup_iters
        warm = solver.warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if solver.lr_schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * iteration / solver.max_iter))
    return warm * solver.gamma ** bisect.bisect_right(sorted(solver.steps), iteration)


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.Optimizer:
    """SGD; no weight decay on biases and norm parameters (1-D tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": solver.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=solver.base_lr, momentum=solver.momentum)


class InfiniteBatches(Sampler[list[int]]):
    """Endless training batches, epoch after epoch, starting at batch ``start`` (for exact resume)."""

    def __init__(self, dataset: CocoDetection, batch_size: int, dist_info: DistInfo, seed: int, grouping: bool,
                 start: int = 0) -> None:
        self.sampler = DistributedSampler(dataset, num_replicas=dist_info.world_size, rank=dist_info.rank,
                                          shuffle=True, seed=seed)
        groups = aspect_ratio_groups(dataset.aspect_ratios()) if grouping else [0] * len(dataset)
        self.batches = GroupedBatchSampler(self.sampler, groups, batch_size)
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        skip, epoch = self.start, 0
        while True:
            self.sampler.set_epoch(epoch)
            for batch in self.batches:
                if skip:
                    skip -= 1
                    continue
                yield batch
            epoch += 1


@dataclass
class TrainState:
    model: nn.Module  # unwrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    core: TrainStep  # the step: AMP with its gradient scaler, clipping, NaN guard
    iteration: int = 0
    rng: dict[str, Any] | None = None  # restored once the data iterator exists (creating it draws a seed)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.core.scaler.state_dict(), "iteration": self.iteration, "rng": rng_state()}

    def restore(self, ckpt: dict[str, Any]) -> None:
        missing = [k for k in ("optimizer", "scheduler", "scaler", "iteration", "rng") if k not in ckpt]
        if missing:
            raise ValueError(f"cannot resume: the checkpoint lacks {missing} (it holds weights only; "
                             "use model.backbone_weights or --weights for that)")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.core.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = int(ckpt["iteration"])
        self.rng = ckpt["rng"]


def make_train_state(model: nn.Module, solver: SolverConfig, device: torch.device) -> TrainState:
    optimizer = build_optimizer(model, solver)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, solver))
    core = TrainStep(optimizer, device=device, amp=solver.amp, grad_clip=solver.clip_grad_norm,
                     params=[p for p in model.parameters() if p.requires_grad], reduce=all_reduce_mean,
                     hooks=[SchedulerStep(scheduler)])
    return TrainState(model, optimizer, scheduler, core)


def train(state: TrainState, dataset: CocoDetection, solver: SolverConfig, *, device: torch.device,
          dist_info: DistInfo, output_dir: Path, identity: dict[str, Any], seed: int = 0, num_workers: int = 0,
          grouping: bool = True, eval_hook: Callable[[int], None] | None = None, eval_period: int = 0,
          precise_bn_iters: int = 0, on_iteration: Callable[[int, int], None] | None = None) -> None:
    """Run from ``state.iteration`` to ``solver.max_iter``; checkpoints every ``checkpoint_period`` iterations.

    ``on_iteration(done, iteration)`` runs after each step: iterations done by this call, and the run's count.

    ``precise_bn_iters`` > 0: BatchNorm statistics are recomputed over that many training batches
    (:mod:`.precise_bn`) before each evaluation and before the final weights are saved.
    """
    model = state.model

    def refresh_bn_stats() -> None:
        if precise_bn_iters > 0:
            sampler = InfiniteBatches(dataset, solver.ims_per_batch, dist_info, seed + state.iteration, grouping)
            batches = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)
            if recompute_bn_stats(model, (images for images, _ in batches), precise_bn_iters, device):
                log.info("PreciseBN: BatchNorm statistics recomputed over %d batches at iteration %d",
                         precise_bn_iters, state.iteration)

    ddp = DistributedDataParallel(model) if dist_info.distributed else model
    batches = InfiniteBatches(dataset, solver.ims_per_batch, dist_info, seed, grouping, start=state.iteration)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate,
                        persistent_workers=num_workers > 0)
    logger = MetricsLogger(output_dir, step_key="iter", enabled=dist_info.is_main)
    checkpoint = output_dir / CHECKPOINT_NAME
    model.train()
    bar = tqdm(total=solver.max_iter, initial=state.iteration, desc="train", disable=not dist_info.is_main,
               dynamic_ncols=True)
    started, start_iter = time.perf_counter(), state.iteration
    data = iter(loader)
    skipped_images = 0  # data.skip_bad_images: unreadable images replaced in this process's batches
    if state.rng is not None:
        set_rng_state(state.rng)
        state.rng = None
    try:
        for images, targets in data:
            if state.iteration >= solver.max_iter:
                break
            skipped_images += sum(int(t.pop("skipped_images", 0)) for t in targets)
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            try:
                metrics = state.core.run(lambda: ddp(images, targets))
            except NonFiniteLossError as err:
                good = f"{checkpoint} (iteration {_checkpoint_iter(checkpoint)})" if checkpoint.exists() else "none yet"
                raise FloatingPointError(
                    f"{err} at iteration {state.iteration + 1} ({err.parts}); training stopped. Last good checkpoint: "
                    f"{good}. Lower solver.base_lr, raise solver.warmup_iters or set solver.clip_grad_norm.") from None
            state.iteration += 1
            bar.update(1)
            if on_iteration is not None:
                on_iteration(state.iteration - start_iter, state.iteration)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.2e}")
            if state.iteration % solver.log_period == 0 or state.iteration == solver.max_iter or state.iteration == 1:
                elapsed = time.perf_counter() - started
                per_iter = elapsed / (state.iteration - start_iter)
                skips = {}
                if dataset.skip_bad_images:  # every rank reaches this line at the same iteration
                    count = all_reduce_mean(torch.tensor(float(skipped_images), device=device)) * dist_info.world_size
                    skips["skipped_images"] = int(round(float(count)))
                logger.log(iter=state.iteration, **metrics, time_per_iter=per_iter,
                           eta_seconds=per_iter * (solver.max_iter - state.iteration), **skips)
            if state.iteration % solver.checkpoint_period == 0 and state.iteration < solver.max_iter \
                    and dist_info.is_main:
                save_checkpoint(checkpoint, {"model": model.state_dict(), **identity, **state.checkpoint_extra()})
            if eval_hook is not None and eval_period and state.iteration % eval_period == 0 \
                    and state.iteration < solver.max_iter:
                refresh_bn_stats()
                eval_hook(state.iteration)
                model.train()
    finally:
        bar.close()
        logger.close()
    refresh_bn_stats()
    if dist_info.is_main:
        save_checkpoint(checkpoint, {"model": model.state_dict(), **identity, **state.checkpoint_extra()})
        save_checkpoint(output_dir / FINAL_NAME,
                        {"model": model.state_dict(), **identity, "iteration": state.iteration})


def _checkpoint_iter(path: Path) -> Any:
    try:
        return read_checkpoint(path).get("iteration", "?")
    except Exception:  # only used to word an error message
        return "?"


def evaluate_and_report(model: nn.Module, dataset: CocoDetection, *, device: torch.device, dist_info: DistInfo,
                        output_dir: Path, vis: int = 0, vis_score_thresh: float = 0.5,
                        iteration: int | None = None) -> dict[str, float]:
    """COCOeval on ``dataset``; rank 0 prints the 12 numbers, writes coco_eval.json and draws ``vis`` images."""
    records = predict(model, dataset, device, rank=dist_info.rank, world_size=dist_info.world_size,
                      progress=dist_info.is_main)
    if not dist_info.is_main:
        return {}
    metrics = coco_evaluate(dataset, records)
    print(f"COCO bbox ({len(dataset)} images): {format_metrics(metrics)}", flush=True)
    atomic_write_json(output_dir / "coco_eval.json", metrics)
    if iteration is not None:
        logger = MetricsLogger(output_dir, step_key="iter")
        logger.log(iter=iteration, **{f"eval/{k}": v for k, v in metrics.items()})
        logger.close()
    if vis:
        paths = save_visualizations(model, dataset, device, output_dir / "vis", vis, vis_score_thresh)
        print(f"drew {len(paths)} images (left: predictions >= {vis_score_thresh}, right: ground truth) in "
              f"{output_dir / 'vis'}", flush=True)
    return metrics
