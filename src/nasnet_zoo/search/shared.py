"""The shared-weight reward (ENAS, SPOS): one supernet, trained in rounds, scores every child on the same images.

:class:`SharedWeightEvaluator` is a reward of the one search loop (``runner.SearchRun``) with a training hook:
before every round of ``shared.controller_updates x ppo.minibatch`` children, the loop asks it to train the
supernet for ``shared.train_steps`` minibatches (the first round after ``shared.warmup_steps`` uniform ones),
one path per minibatch: drawn uniformly, proposed by the strategy, or, with ``fair``, every op once (FairNAS).
A child's reward is its accuracy with the shared weights on the first ``shared.eval_images`` held-out images,
the same images for every child, in batches of ``shared.eval_batch_size`` (BatchNorm uses batch statistics, so
the batch size is part of the measurement). Its state (weights, momentum, scaler, counters) is saved in the
search checkpoint, so a resumed search goes on from the last round.

The supernet is the space's: :class:`~nasnet_zoo.search.supernet.Supernet` (the one NASNet) for ``nasnet``,
NAS-Bench-201's skeleton for ``nasbench201``; both run ``supernet(x, genotype)``.

Under torchrun, every process samples the same children (same seeds), trains on its slice of each minibatch
and averages the sampled path's gradients with one ``all_reduce``; rewards sum correct counts over the
processes' slices. torch's ``DistributedDataParallel`` is not used: it reduces every registered parameter each
step (hundreds of times the sampled path here) and turns the unused ones' missing gradients into zeros, which
momentum and weight decay would then apply to every op not sampled.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..engine import StepHook, TrainStep
from ..utils.distributed import DistInfo, all_reduce_mean
from .child import ProxyData
from .rewards import ChildResult
from .spaces import SearchGenotype, SearchSpace, build_space
from .state import STATE_NAME, load_search_state
from .strategy import SearchStrategy
from .supernet import Supernet

if TYPE_CHECKING:  # settings does not import this module; the hint is all that is needed
    from .settings import SearchConfig


def _mix(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, purpose, counter), stable across runs and machines."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    return value >> 1


class AverageGradients(StepHook):
    """Average the sampled path's gradients over the torchrun processes with one ``all_reduce``."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def after_backward(self, step: TrainStep) -> None:
        grads = [p.grad for p in step.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def build_supernet(space: SearchSpace, *, cells: int, num_conv_filters: int, num_classes: int,
                   image_size: int) -> nn.Module:
    """The weight-sharing network of ``space`` at the proxy child's size (``child.cells``,
    ``child.num_conv_filters``; NAS-Bench-201's C)."""
    if space.name == "nasbench201":
        from .nasbench201_supernet import Supernet as NASBench201Supernet
        return NASBench201Supernet(channels=num_conv_filters, cells_per_stage=cells, num_classes=num_classes)
    return Supernet(space, cells_per_stack=cells, num_conv_filters=num_conv_filters, num_classes=num_classes,  # type: ignore[arg-type]
                    image_size=image_size)


def fair_paths(space: SearchSpace, rng: np.random.Generator) -> list[SearchGenotype]:
    """FairNAS's strict fairness: as many paths as ops, each op once at every op decision; other decisions drawn
    uniformly per path."""
    steps = space.steps()
    count = space.vocabulary_size("op")
    columns = [rng.permutation(n) if kind == "op" else rng.integers(0, n, count) for kind, n in steps]
    return [space.to_genotype([int(c[k]) for c in columns]) for k in range(count)]


class SharedWeightEvaluator:
    """The supernet, its optimizer and its data: train it with sampled paths, score any child of the space.

    ``data`` holds the training images and the held-out images (``ProxyData``). With several torchrun processes,
    each works on its slice of every batch and the results are reduced over all of them.
    """

    def __init__(self, cfg: SearchConfig, data: ProxyData, device: torch.device | str = "cpu",
                 info: DistInfo = DistInfo()) -> None:
        child, shared = cfg.child, cfg.shared
        self.cfg, self.shared, self.data, self.info = cfg, shared, data, info
        self.device = torch.device(device)
        self.seed = cfg.seed
        self.space = build_space(cfg.space, cfg.controller.num_blocks, cfg.controller.ops, cfg.controller.combiners)
        for name, size in (("child.batch_size", child.batch_size), ("shared.eval_batch_size", shared.eval_batch_size)):
            if size % info.world_size:
                raise ValueError(f"{name}={size} must be divisible by the {info.world_size} torchrun processes")
        with torch.random.fork_rng(devices=[]):  # the initial weights follow the search's seed, not the caller's RNG
            torch.manual_seed(_mix(cfg.seed, 0))
            self.supernet = build_supernet(self.space, cells=child.cells, num_conv_filters=child.num_conv_filters,
                                           num_classes=data.num_classes, image_size=child.image_size).to(self.device)
        if self.device.type == "cuda":
            self.supernet = self.supernet.to(memory_format=torch.channels_last)
        self.supernet.train()  # batch statistics always (both supernets keep no running averages)
        self.batch_size = child.batch_size
        self.params = list(self.supernet.parameters())  # walking thousands of modules per step costs more than a step
        self.optimizer = torch.optim.SGD(self.params, lr=child.lr, momentum=child.momentum,
                                         weight_decay=child.weight_decay, nesterov=True)
        # the one training step; a non-finite loss on any process skips the step on all of them
        self.core = TrainStep(self.optimizer, device=self.device, amp=shared.amp, grad_clip=shared.grad_clip,
                              params=self.params, max_skips=None, reduce=all_reduce_mean,
                              hooks=[AverageGradients(info.world_size)] if info.distributed else ())
        self.amp_dtype, self.scaler = self.core.amp_dtype, self.core.scaler
        self.train_x, self.train_y = data.train_x.to(self.device), data.train_y.to(self.device)
        n_eval = min(shared.eval_images, len(data.val_y))
        self.eval_x, self.eval_y = data.val_x[:n_eval].to(self.device), data.val_y[:n_eval].to(self.device)
        self._epoch_order: tuple[int, torch.Tensor] | None = None
        self.step = 0    # supernet minibatches trained so far
        self.rounds = 0  # training rounds done
        self.round_children = shared.controller_updates * cfg.ppo.minibatch

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

    # ---- training and scoring ---------------------------------------------------------------------------------
    def _all_sum(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.info.distributed:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def train_step(self, paths: SearchGenotype | list[SearchGenotype]) -> dict[str, float]:
        """One SGD step on the next training minibatch, its loss averaged over ``paths`` (one path, or the fair
        set); a non-finite loss skips the step."""
        paths = paths if isinstance(paths, list) else [paths]
        x, y = self.train_batch(self.step)
        self.step += 1
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        correct = []

        def loss() -> torch.Tensor:
            logits = [self.supernet(x, path) for path in paths]
            correct.append(sum(float((out.argmax(1) == y).sum()) for out in logits) / len(paths))
            return sum(F.cross_entropy(out.float(), y) for out in logits) / len(paths)

        metrics = self.core.run(loss)
        right, count = self._all_sum([correct[0], float(len(y))])
        return {"loss": metrics["loss"], "accuracy": right / count, "skipped": int(metrics["skipped"])}

    @torch.no_grad()
    def score(self, genotype: SearchGenotype) -> float:
        """Accuracy with the shared weights on the fixed evaluation images (every process its slice)."""
        n, size = len(self.eval_y), self.shared.eval_batch_size
        correct = total = 0.0
        for start in range(0, n, size):
            idx = self._slice(torch.arange(start, min(start + size, n))).to(self.device)
            x = self.eval_x[idx]
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with self.core.autocast():
                logits = self.supernet(x, genotype)
            c, t = self._all_sum([float((logits.argmax(1) == self.eval_y[idx]).sum()), float(len(idx))])
            correct, total = correct + c, total + t
        return correct / total

    def __call__(self, genotype: SearchGenotype, seed: int = 0, device: str | None = None) -> ChildResult:
        """The search loop's reward (``seed`` and ``device`` are the stand-alone evaluators'; unused here)."""
        tic = time.perf_counter()
        accuracy = self.score(genotype)
        return ChildResult(accuracy, seconds=time.perf_counter() - tic,
                           info={"train_step": self.step, "round": self.rounds, "eval_images": len(self.eval_y)})

    def train(self, steps: int, sampler: Callable[[], SearchGenotype | list[SearchGenotype]]) -> list[dict[str, float]]:
        """``steps`` training steps, each on the path(s) ``sampler()`` returns (e.g. uniform, for rank fidelity)."""
        return [self.train_step(sampler()) for _ in range(steps)]

    def uniform_sampler(self, purpose: int) -> Callable[[], SearchGenotype | list[SearchGenotype]]:
        """Paths drawn from the seed (same on every process): uniform, or the fair set with ``sampling: fair``."""
        rng = np.random.default_rng([self.seed, purpose, self.rounds, self.step])
        if self.shared.sampling == "fair":
            return lambda: fair_paths(self.space, rng)  # type: ignore[return-value]
        return lambda: self.space.to_genotype(self.space.random_decisions(rng))

    # ---- the search loop's training hook ----------------------------------------------------------------------
    def reusable(self, earlier: dict[str, Any]) -> bool:
        """An earlier reward of the same genotype stands only if the weights have not been trained since."""
        return earlier.get("info", {}).get("round") == self.rounds

    def next_round_at(self) -> int:
        """The number of journaled children at which the next training round is due."""
        return self.rounds * self.round_children

    def train_round(self, strategy: SearchStrategy) -> dict[str, float]:
        """Train before the next round of children: the warm-up first, then ``shared.train_steps`` minibatches."""
        tic = time.perf_counter()
        stats = self.train(self.shared.warmup_steps, self.uniform_sampler(3)) if self.rounds == 0 else []
        if self.shared.sampling == "strategy":
            stats += self.train(self.shared.train_steps, lambda: strategy.propose(1)[0].genotype)
        else:
            stats += self.train(self.shared.train_steps, self.uniform_sampler(4))
        self.rounds += 1
        summary = {"shared/step": float(self.step), "shared/round_seconds": time.perf_counter() - tic}
        if stats:
            summary |= {"shared/loss": sum(s["loss"] for s in stats) / len(stats),
                        "shared/train_accuracy": sum(s["accuracy"] for s in stats) / len(stats),
                        "shared/skipped_steps": float(sum(s["skipped"] for s in stats))}
        return summary

    def state_dict(self) -> dict[str, Any]:
        """Weights and momentum as single flat tensors: tens of thousands of small tensors pickle 100x slower."""
        params = self.params
        with_momentum = [i for i, p in enumerate(params) if "momentum_buffer" in self.optimizer.state.get(p, {})]
        momentum = [self.optimizer.state[params[i]]["momentum_buffer"] for i in with_momentum]
        return {"weights": torch.cat([p.detach().reshape(-1) for p in params]).cpu(),
                "momentum": torch.cat([m.reshape(-1) for m in momentum]).cpu() if momentum else torch.zeros(0),
                "with_momentum": torch.tensor(with_momentum, dtype=torch.long), "scaler": self.scaler.state_dict(),
                "step": self.step, "rounds": self.rounds}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any], *, weights_only: bool = False) -> None:
        """Restore a saved state; ``weights_only`` takes the weights and leaves optimizer and counters fresh
        (``shared.init_from``: a supernet trained elsewhere, e.g. a warm-up shared by several searches)."""
        params = self.params
        weights = state["weights"].to(self.device)
        if weights.numel() != sum(p.numel() for p in params):
            raise ValueError(f"the checkpoint holds {weights.numel()} shared weights; this supernet has "
                             f"{sum(p.numel() for p in params)} (other child.*, space or controller.* settings)")
        offset = 0
        for p in params:
            p.copy_(weights[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        if weights_only:
            return
        momentum, offset = state["momentum"].to(self.device), 0
        self.optimizer.state.clear()
        for i in state["with_momentum"].tolist():
            p = params[i]
            self.optimizer.state[p] = {"momentum_buffer": momentum[offset:offset + p.numel()].view_as(p).clone()}
            offset += p.numel()
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.rounds = int(state["step"]), int(state["rounds"])


def supernet_state_of(folder: str | Path) -> dict[str, Any]:
    """The shared weights saved in a shared search's checkpoint (``shared.init_from``), or a clear error."""
    path = Path(folder)
    state = load_search_state(path / STATE_NAME if path.is_dir() else path)
    if state is None or "evaluator" not in state:
        raise ValueError(f"{folder} holds no shared-weight search checkpoint ({STATE_NAME} with shared weights); "
                         "give the output folder of a finished --reward shared search")
    return state["evaluator"]

