"""Proximal Policy Optimization of the controller (paper, section 3: PPO with the settings below).

The paper gives the learning rate, entropy weight, baseline decay and minibatch size; it does not give the
clip range or the number of epochs per minibatch, so they are settings here (defaults: clip 0.2, 1 epoch).
Because children finish asynchronously, each one carries the log-probability it was sampled with, and the
importance ratio against the current policy corrects for the policy having moved since.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .controller import Controller
from .spaces import SearchSpace
from .strategy import Proposal


@dataclass
class PPOConfig:
    lr: float = 0.00035
    clip: float = 0.2
    epochs: int = 1
    entropy_weight: float = 0.00001
    baseline_decay: float = 0.95
    minibatch: int = 20

    def validate(self) -> None:
        if self.lr <= 0 or self.clip <= 0 or self.epochs < 1 or self.minibatch < 1:
            raise ValueError(f"PPO needs lr > 0, clip > 0, epochs >= 1, minibatch >= 1; got {self}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


class PPOTrainer:
    """Clipped-surrogate updates with an exponential-moving-average reward baseline."""

    def __init__(self, controller: Controller, config: PPOConfig = PPOConfig()) -> None:
        config.validate()
        self.controller = controller
        self.config = config
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=config.lr)
        self.baseline: float | None = None
        self.updates = 0

    def advantages(self, rewards: list[float]) -> list[float]:
        """Reward minus the baseline as it stood when each child arrived; the baseline then absorbs it."""
        out = []
        for r in rewards:
            if self.baseline is None:
                self.baseline = r
            out.append(r - self.baseline)
            self.baseline = self.config.baseline_decay * self.baseline + (1 - self.config.baseline_decay) * r
        return out

    def update(self, decisions: torch.Tensor, old_log_prob: torch.Tensor, rewards: list[float]) -> dict[str, float]:
        cfg = self.config
        advantage = torch.tensor(self.advantages(rewards), dtype=torch.float32, device=self.controller.device)
        old_log_prob = old_log_prob.to(self.controller.device)
        for _ in range(cfg.epochs):
            out = self.controller.evaluate(decisions)
            ratio = torch.exp(out.log_prob - old_log_prob)
            surrogate = torch.min(ratio * advantage, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * advantage)
            loss = -surrogate.mean() - cfg.entropy_weight * out.entropy.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.updates += 1
        return {"loss": loss.item(), "entropy": out.entropy.mean().item(), "baseline": float(self.baseline),
                "ratio_mean": ratio.mean().item(), "advantage_mean": float(advantage.mean())}


class PPOStrategy:
    """The RL search: sample from the controller, update it every ``minibatch`` finished children."""

    name = "ppo"

    def __init__(self, space: SearchSpace, config: PPOConfig = PPOConfig(), *, hidden_size: int = 100,
                 init_range: float = 0.1, seed: int = 0) -> None:
        self.space = space
        self.controller = Controller(space, hidden_size, init_range, seed=seed)
        self.trainer = PPOTrainer(self.controller, config)
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer: list[tuple[tuple[int, ...], float, float]] = []
        self.batch = config.minibatch

    def propose(self, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        out = self.controller.sample(n, self.generator)
        rows = out.decisions.cpu().tolist()
        return [Proposal(tuple(row), self.space.to_genotype(row), float(lp)) for row, lp in zip(rows, out.log_prob)]

    def observe(self, decisions: tuple[int, ...], log_prob: float, reward: float) -> dict[str, float] | None:
        self.buffer.append((tuple(decisions), float(log_prob), float(reward)))
        if len(self.buffer) < self.trainer.config.minibatch:
            return None
        batch, self.buffer = self.buffer, []
        return self.trainer.update(torch.tensor([b[0] for b in batch]), torch.tensor([b[1] for b in batch]),
                                   [b[2] for b in batch])

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "optimizer": self.trainer.optimizer.state_dict(),
                "baseline": self.trainer.baseline, "updates": self.trainer.updates,
                "generator": self.generator.get_state(), "buffer": list(self.buffer)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.baseline = state["baseline"]
        self.trainer.updates = state["updates"]
        self.generator.set_state(state["generator"])
        self.buffer = [(tuple(d), float(lp), float(r)) for d, lp, r in state["buffer"]]
