"""Weight-sharing search (ENAS, Pham et al. 2018) with the paper's controller and PPO: one machine, one GPU.

A round alternates (a) ``shared.train_steps`` SGD steps of the :class:`Supernet` on the training split, one
child per minibatch (from the current policy for PPO, uniform for random search), and (b)
``shared.controller_updates`` PPO minibatches: each sampled child's reward is its accuracy, with the shared
weights, on its own minibatch of the validation images held out of training. Every rewarded child is one
journal line, so a shared search leaves the outputs of a proxy search.

Resume contract (a SIGKILL at any instant): every source of randomness is a pure function of the seed and a
counter (training batch and flips of step s, validation batch of child i) or lives in the checkpoint
(strategy RNG, controller, Adam, baseline), and a checkpoint (supernet, SGD, grad scaler, strategy, counters)
is written atomically after every round; the previous one is kept as a fallback. On ``resume`` the round after
the checkpoint is recomputed; the children it proposes that the journal already holds are taken from the
journal (reward included, and checked to be the same decisions) instead of being evaluated again, so no line
is lost or written twice and PPO sees every child once. On CPU the resumed search equals the uninterrupted one.

Under torchrun, every process samples the same children (same seeds), trains on its slice of each minibatch
and averages the sampled path's gradients with one ``all_reduce``; rewards sum correct counts over the
processes' slices of the validation minibatch. torch's ``DistributedDataParallel`` is not used: it reduces
every registered parameter each step (hundreds of times the sampled path here) and turns the unused ones'
missing gradients into zeros, which momentum and weight decay would then apply to every op not sampled.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..config import dump_config
from ..genotypes import Genotype
from ..utils.distributed import DistInfo, init_distributed
from ..utils.checkpoint import read_checkpoint, save_checkpoint
from ..utils.io import read_jsonl
from ..utils.metrics import MetricsLogger
from ..utils.run_lock import is_main_process, lock_run_folder
from .child import ProxyData
from .journal import JOURNAL_NAME, Journal, child_record, genotype_key
from .latency import LatencyObjective
from .rewards import ChildResult
from .settings import (CONFIG_NAME, SHARED_STATE_NAME, SearchConfig, SearchConfigError, build_strategy,
                       refuse_unless_resume, validate_config)
from .state import STATE_NAME
from .strategy import Proposal
from .supernet import Supernet

SHARED_STATE_PREVIOUS = "shared_state.prev.pt"
_VERSION = 2  # 2: weights and momentum as flat tensors


def _mix(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, purpose, counter), stable across runs and machines."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    return value >> 1


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto``: float16 on CUDA (with a gradient scaler), none on CPU; ``bf16``/``fp16`` force one; ``off``."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.float16


class SharedWeightEvaluator:
    """The supernet, its optimizer and its data: train with sampled children, score any genotype.

    ``data`` holds the training images and the held-out validation images (``ProxyData``). With several
    torchrun processes, each works on its slice of every batch and the results are reduced over all of them.
    """

    def __init__(self, cfg: SearchConfig, data: ProxyData, device: torch.device | str = "cpu",
                 info: DistInfo = DistInfo()) -> None:
        child, shared = cfg.child, cfg.shared
        self.cfg, self.data, self.info = cfg, data, info
        self.device = torch.device(device)
        self.seed = cfg.seed
        for name, size in (("child.batch_size", child.batch_size), ("shared.eval_batch_size", shared.eval_batch_size)):
            if size % info.world_size:
                raise SearchConfigError(f"{name}={size} must be divisible by the {info.world_size} torchrun processes")
        with torch.random.fork_rng(devices=[]):  # the initial weights follow the search's seed, not the caller's RNG
            torch.manual_seed(_mix(cfg.seed, 0))
            self.supernet = Supernet(num_blocks=cfg.controller.num_blocks, cells_per_stack=child.cells,
                                     filters=child.filters, num_classes=data.num_classes,
                                     image_size=child.image_size).to(self.device)
        if self.device.type == "cuda":
            self.supernet = self.supernet.to(memory_format=torch.channels_last)
        self.batch_size, self.eval_batch_size = child.batch_size, min(shared.eval_batch_size, len(data.val_y))
        self.params = list(self.supernet.parameters())  # walking 20,000 modules per step costs more than the step
        self.optimizer = torch.optim.SGD(self.params, lr=child.lr, momentum=child.momentum,
                                         weight_decay=child.weight_decay, nesterov=True)
        self.amp_dtype = resolve_amp(shared.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.grad_clip = shared.grad_clip
        self.train_x, self.train_y = data.train_x.to(self.device), data.train_y.to(self.device)
        self.val_x, self.val_y = data.val_x.to(self.device), data.val_y.to(self.device)
        self._epoch_order: tuple[int, torch.Tensor] | None = None

    # ---- data: pure functions of (seed, counter), so resuming needs no data state -----------------------------
    def _slice(self, idx: torch.Tensor) -> torch.Tensor:
        return idx[self.info.rank::self.info.world_size]

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch ``step`` of the training split (epochs reshuffled from the seed), randomly flipped."""
        n = len(self.train_y)
        per_epoch = max(1, n // self.batch_size)
        epoch, position = divmod(step, per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = torch.Generator().manual_seed(_mix(self.seed, 1, epoch))
            self._epoch_order = (epoch, torch.randperm(n, generator=generator))
        batch = self._epoch_order[1][position * self.batch_size:(position + 1) * self.batch_size]
        flip = torch.rand(len(batch), generator=torch.Generator().manual_seed(_mix(self.seed, 2, step))) < 0.5
        idx, flip = self._slice(batch), self._slice(flip).to(self.device)
        x = self.train_x[idx.to(self.device)]
        return torch.where(flip[:, None, None, None], x.flip(-1), x), self.train_y[idx.to(self.device)]

    def val_batch(self, child_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation minibatch of child ``child_index``: consecutive held-out images, cycling."""
        n = len(self.val_y)
        start = child_index * self.eval_batch_size % n
        idx = self._slice(torch.arange(start, start + self.eval_batch_size) % n).to(self.device)
        return self.val_x[idx], self.val_y[idx]

    # ---- training and scoring ---------------------------------------------------------------------------------
    def _all_sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.info.distributed:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def train_step(self, genotype: Genotype, step: int) -> dict[str, float]:
        """One SGD step of the genotype's path on training minibatch ``step``; a non-finite loss skips it."""
        net = self.supernet
        x, y = self.train_batch(step)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = net(x, genotype)
            loss = F.cross_entropy(logits.float(), y)
        loss_sum, correct, count, finite = self._all_sum([float(loss.detach()) * len(y),
                                                          float((logits.argmax(1) == y).sum()), float(len(y)),
                                                          float(not torch.isfinite(loss.detach()))])
        self.optimizer.zero_grad(set_to_none=True)
        if finite == 0:  # every process saw a finite loss
            self.scaler.scale(loss).backward()
            params = [p for p in self.params if p.grad is not None]
            if self.info.distributed:
                self._average_gradients(params)
            self.scaler.unscale_(self.optimizer)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return {"loss": loss_sum / count, "accuracy": correct / count, "skipped": int(finite > 0)}

    def _average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # type: ignore[union-attr]
        dist.all_reduce(flat)
        flat /= self.info.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))  # type: ignore[union-attr]
            offset += g.numel()  # type: ignore[union-attr]

    @torch.no_grad()
    def accuracy(self, genotype: Genotype, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of ``genotype`` with the shared weights on this process's slice, summed over processes."""
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.supernet(x, genotype)
        correct, total = self._all_sum([float((logits.argmax(1) == y).sum()), float(len(y))])
        return correct / total

    def child_reward(self, genotype: Genotype, child_index: int) -> float:
        return self.accuracy(genotype, *self.val_batch(child_index))

    def score(self, genotype: Genotype, batches: int | None = None) -> float:
        """Shared-weight accuracy on the first ``batches`` validation minibatches (``None``: all held-out images)."""
        n = len(self.val_y)
        count = math.ceil(n / self.eval_batch_size) if batches is None else batches
        correct = total = 0.0
        for b in range(count):
            start = b * self.eval_batch_size
            idx = torch.arange(start, min(start + self.eval_batch_size, n) if batches is None
                               else start + self.eval_batch_size) % n
            idx = self._slice(idx).to(self.device)
            acc = self.accuracy(genotype, self.val_x[idx], self.val_y[idx])
            size = self._all_sum([float(len(idx))])[0]
            correct, total = correct + acc * size, total + size
        return correct / total

    def train(self, steps: int, sampler: Callable[[], Genotype], first_step: int = 0) -> list[dict[str, float]]:
        """``steps`` training steps, each on the child ``sampler()`` returns (e.g. uniform, for rank fidelity)."""
        return [self.train_step(sampler(), first_step + s) for s in range(steps)]

    def state_dict(self) -> dict[str, Any]:
        """Weights and momentum as single flat tensors: tens of thousands of small tensors pickle 100x slower."""
        params = self.params
        with_momentum = [i for i, p in enumerate(params) if "momentum_buffer" in self.optimizer.state.get(p, {})]
        momentum = [self.optimizer.state[params[i]]["momentum_buffer"] for i in with_momentum]
        return {"weights": torch.cat([p.detach().reshape(-1) for p in params]).cpu(),
                "momentum": torch.cat([m.reshape(-1) for m in momentum]).cpu() if momentum else torch.zeros(0),
                "with_momentum": torch.tensor(with_momentum, dtype=torch.long), "scaler": self.scaler.state_dict()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = self.params
        weights = state["weights"].to(self.device)
        if weights.numel() != sum(p.numel() for p in params):
            raise ValueError(f"the checkpoint holds {weights.numel()} shared weights; this supernet has "
                             f"{sum(p.numel() for p in params)} (different child.* or controller sizes)")
        offset = 0
        for p in params:
            p.copy_(weights[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        momentum, offset = state["momentum"].to(self.device), 0
        self.optimizer.state.clear()
        for i in state["with_momentum"].tolist():
            p = params[i]
            self.optimizer.state[p] = {"momentum_buffer": momentum[offset:offset + p.numel()].view_as(p).clone()}
            offset += p.numel()
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


# ---- checkpoints ----------------------------------------------------------------------------------------------

def save_shared_state(folder: Path, state: dict[str, Any]) -> None:
    """Keep the last two: the current one becomes the fallback, then the new one is written atomically."""
    latest = folder / SHARED_STATE_NAME
    if latest.exists():
        os.replace(latest, folder / SHARED_STATE_PREVIOUS)
    save_checkpoint(latest, {"version": _VERSION, **state})


def load_shared_state(folder: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of a shared search (falling back to the previous one), or None."""
    for path in (folder / SHARED_STATE_NAME, folder / SHARED_STATE_PREVIOUS):
        if not path.exists():
            continue
        try:
            state = read_checkpoint(path, written_by="tools/search.py")  # weights only: nothing in it can run
            if state.get("version") != _VERSION:
                raise ValueError(f"checkpoint version {state.get('version')!r}; this code reads {_VERSION}")
            return state
        except Exception as err:  # noqa: BLE001 - a damaged file of any kind: use the previous one
            warnings.warn(f"{path} cannot be read ({type(err).__name__}: {err}); trying the previous checkpoint")
    return None


# ---- the search -----------------------------------------------------------------------------------------------

class SharedSearchRun:
    """A shared-weight search in one output folder; ``run()`` goes until the journal holds ``children``."""

    def __init__(self, cfg: SearchConfig, resume: bool = False, progress: bool = True) -> None:
        validate_config(cfg)
        if cfg.reward != "shared":
            raise SearchConfigError(f"SharedSearchRun runs reward 'shared', got {cfg.reward!r}")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.lock = lock_run_folder(self.out, enabled=is_main_process())  # before the journal is read
        try:
            self._open(resume, progress)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, resume: bool, progress: bool) -> None:
        cfg = self.cfg
        records = read_jsonl(self.out / JOURNAL_NAME)
        refuse_unless_resume(self.out, len(records), resume)
        if resume and (self.out / STATE_NAME).exists():
            raise SearchConfigError(f"{self.out} holds a proxy or oracle search ({STATE_NAME}); it cannot be resumed "
                                    "with reward 'shared': start a new --output-dir")
        self.info, self.device = init_distributed(cfg.shared.device)
        self.journal = Journal(self.out / JOURNAL_NAME) if self.info.is_main else None
        self.records = self.journal.records if self.journal is not None else records
        self.replay_until = len(self.records)
        self.progress = progress and self.info.is_main
        data = ProxyData.load(cfg.data_dir, cfg.child, dataset=cfg.dataset)
        self.evaluator = SharedWeightEvaluator(cfg, data, self.device, self.info)
        self.strategy = build_strategy(cfg)
        self.latency = LatencyObjective(cfg.latency, self.records) if cfg.latency.enabled else None
        self.done = self.step = self.round = self.resumes = 0
        state = load_shared_state(self.out) if resume else None
        if state is not None:
            try:
                self.evaluator.load_state_dict(state["evaluator"])
            except ValueError as err:
                raise SearchConfigError(f"{self.out}: {err}; resume with the search's own child.* settings") from None
            self.strategy.load_state_dict(state["strategy"])
            self.done, self.step, self.round = state["observed"], state["step"], state["round"]
            self.resumes = state["resumes"] + 1
            if self.done > len(self.records):
                raise SearchConfigError(f"{self.out}: the checkpoint has seen {self.done} children but the journal "
                                        f"holds {len(self.records)}; the journal was cut or replaced")
            if len(self.records) > self.done and state["round_settings"] != self._round_settings():
                raise SearchConfigError(
                    f"{self.out}: the journal holds {len(self.records) - self.done} children past the checkpoint, "
                    f"sampled in a round with {state['round_settings']}; resume with these settings so that the "
                    f"round is replayed exactly (got {self._round_settings()})")
        elif resume and self.records:
            warnings.warn(f"{self.out}: no readable checkpoint; retraining from the start and replaying the "
                          f"{len(self.records)} journaled children")
        self.metrics = MetricsLogger(self.out, step_key="child", enabled=self.info.is_main)
        if self.info.is_main:
            dump_config(cfg, self.out / CONFIG_NAME)

    def _round_settings(self) -> dict[str, int]:
        """What decides which children a round samples: a replayed round must use the same."""
        return {"shared.train_steps": self.cfg.shared.train_steps,
                "shared.controller_updates": self.cfg.shared.controller_updates, "ppo.minibatch": self.cfg.ppo.minibatch}

    def _checkpoint(self) -> None:
        if self.info.is_main:
            save_shared_state(self.out, {"evaluator": self.evaluator.state_dict(),
                                         "strategy": self.strategy.state_dict(), "observed": self.done,
                                         "step": self.step, "round": self.round, "resumes": self.resumes,
                                         "round_settings": self._round_settings()})

    def _child(self, proposal: Proposal) -> None:
        index = self.done
        if index < self.replay_until:  # journaled before the kill: its reward is in the journal
            record = self.records[index]
            if list(record["decisions"]) != list(proposal.decisions):
                raise RuntimeError(f"{self.out}: journal line {index} holds other decisions than the checkpoint's "
                                   "policy samples again; the journal and checkpoint are from different searches")
            self.strategy.observe(proposal.decisions, proposal.log_prob, record["reward"])
        else:
            tic = time.perf_counter()
            accuracy = self.evaluator.child_reward(proposal.genotype, index)
            scored = self._latency_score(proposal.genotype, accuracy) if self.latency is not None else {}
            result = ChildResult(accuracy, seconds=time.perf_counter() - tic,
                                 info={"train_step": self.step, "round": self.round,
                                       "val_images": self.evaluator.eval_batch_size})
            record = child_record(proposal, result, strategy=self.cfg.strategy, worker="shared", attempts=1,
                                  session=self.resumes) | scored
            key = genotype_key(proposal.genotype)
            if self.journal is not None:
                earlier = self.journal.lookup(key)
                if earlier is not None:
                    record["repeat_of"] = earlier["index"]
                record = self.journal.append(record, key)
            else:
                record = {"index": index, **record}
                self.records.append(record)
            stats = self.strategy.observe(proposal.decisions, proposal.log_prob, record["reward"])
            self.best = max(self.best, record["reward"])
            self.metrics.log(child=index + 1, reward=record["reward"], best_reward=self.best,
                             seconds=record["seconds"])
            if stats is not None:
                self.metrics.log(child=index + 1, **{f"controller/{k}": v for k, v in stats.items()})
        self.done += 1
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best:.3f}", last=f"{record['reward']:.3f}")

    def _latency_score(self, genotype: Genotype, accuracy: float) -> dict[str, float]:
        """Rank 0 times the child (cached per genotype); every process gets its numbers."""
        scored = [self.latency.score(genotype, accuracy) if self.info.is_main else None]  # type: ignore[union-attr]
        if self.info.distributed:
            dist.broadcast_object_list(scored, src=0)
        return scored[0]  # type: ignore[return-value]

    def run(self) -> dict[str, Any]:
        threads = torch.get_num_threads()
        if self.cfg.shared.threads:
            torch.set_num_threads(self.cfg.shared.threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)
            self.metrics.close()
            self.lock.release()

    def _run(self) -> dict[str, Any]:
        cfg, shared = self.cfg, self.cfg.shared
        start = time.perf_counter()
        train_seconds = 0.0
        self.best = max((r["reward"] for r in self.records), default=0.0)
        self.bar = tqdm(total=cfg.children, initial=self.done, desc=f"search {cfg.strategy}/shared",
                        disable=not self.progress, unit="child")
        try:
            while self.done < cfg.children:
                tic = time.perf_counter()
                stats = [self.evaluator.train_step(p.genotype, self.step + s)
                         for s, p in enumerate(self.strategy.propose(shared.train_steps))]
                self.step += len(stats)
                train_seconds += time.perf_counter() - tic
                for _ in range(shared.controller_updates):
                    n = min(cfg.ppo.minibatch, cfg.children - self.done)
                    for proposal in self.strategy.propose(max(n, 0)):
                        self._child(proposal)
                self.round += 1
                self._checkpoint()
                if stats and self.done > self.replay_until:
                    self.metrics.log(child=self.done, **{
                        "shared/loss": sum(s["loss"] for s in stats) / len(stats),
                        "shared/train_accuracy": sum(s["accuracy"] for s in stats) / len(stats),
                        "shared/skipped_steps": sum(s["skipped"] for s in stats), "shared/step": self.step,
                        "shared/round_seconds": time.perf_counter() - tic})
        finally:
            self.bar.close()
        wall = time.perf_counter() - start
        summary = {"children": self.done, "wall_seconds": wall, "train_steps": self.step, "rounds": self.round,
                   "train_seconds": train_seconds, "children_per_hour": 3600 * self.done / wall if wall else 0.0,
                   "best_reward": self.best, "device": str(self.device), "processes": self.info.world_size}
        self.metrics.log(child=self.done, **{f"summary/{k}": v for k, v in summary.items()
                                             if isinstance(v, (int, float))})
        return summary
