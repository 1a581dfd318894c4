"""The paper's controller: a one-layer LSTM (100 units) that emits a child's decisions one by one.

It walks any search space (2 x 5B decisions in NASNet's, 6 in NAS-Bench-201's). Every decision has its own
softmax classifier over its kind's vocabulary (inputs, ops or combiners in NASNet's space), as in
Zoph & Le (2017); the embedding of the choice just made is the next LSTM input. Input softmaxes are masked to
the states that exist at that block. (Measured on the oracle reward: one classifier shared by all decisions of
a kind learns about 4x slower than one classifier per decision.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .spaces import NASNetSpace, SearchSpace

_MASKED = -1e9  # finite, so that masked choices get probability 0 and entropy terms 0 * logit stay 0


@dataclass
class ControllerOutput:
    """Per-child results, each of batch size n: decisions [n, T], summed log-prob [n], summed entropy [n]."""

    decisions: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor


class Controller(nn.Module):
    def __init__(self, space: SearchSpace = NASNetSpace(), hidden_size: int = 100, init_range: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__()
        self.space = space
        self.hidden_size = hidden_size
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.start = nn.Parameter(torch.empty(1, hidden_size))
        self.embed = nn.ModuleDict({k: nn.Embedding(space.vocabulary_size(k), hidden_size) for k in space.kinds})
        self._steps = space.steps()
        self.head = nn.ModuleList(nn.Linear(hidden_size, space.vocabulary_size(kind)) for kind, _ in self._steps)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)

    @property
    def device(self) -> torch.device:
        return self.start.device

    def sample(self, n: int, generator: torch.Generator | None = None) -> ControllerOutput:
        """Sample ``n`` children from the current policy (no gradient)."""
        with torch.no_grad():
            return self._unroll(n, None, generator)

    def evaluate(self, decisions: torch.Tensor) -> ControllerOutput:
        """Log-probability and entropy of given decision sequences under the current policy (for PPO)."""
        decisions = decisions.to(self.device, torch.long)
        if decisions.dim() != 2 or decisions.shape[1] != self.space.num_decisions:
            raise ValueError(f"decisions must be [n, {self.space.num_decisions}], got {list(decisions.shape)}")
        return self._unroll(decisions.shape[0], decisions, None)

    def _unroll(self, n: int, forced: torch.Tensor | None, generator: torch.Generator | None) -> ControllerOutput:
        x = self.start.expand(n, -1)
        state = None
        chosen, log_prob, entropy = [], torch.zeros(n, device=self.device), torch.zeros(n, device=self.device)
        for t, (kind, valid) in enumerate(self._steps):
            h, c = self.lstm(x, state)
            state = (h, c)
            logits = self.head[t](h)
            if valid < logits.shape[1]:
                logits = logits.clone()
                logits[:, valid:] = _MASKED
            log_p = torch.log_softmax(logits, dim=1)
            if forced is None:
                choice = torch.multinomial(log_p.exp().cpu(), 1, generator=generator).squeeze(1).to(self.device)
            else:
                choice = forced[:, t]
            log_prob = log_prob + log_p.gather(1, choice[:, None]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=1)
            chosen.append(choice)
            x = self.embed[kind](choice)
        return ControllerOutput(torch.stack(chosen, dim=1), log_prob, entropy)
