"""A weight-sharing supernet in NAS-Bench-201's space (issue 23, item 5), so its ranking can be judged by the table.

NAS-Bench-201 (Dong and Yang, ICLR 2020) trained every cell of its space alone; a supernet that ranks cells the
way that table does is a reward worth searching with, one that does not is not. This module is NAS-Bench-201's
macro skeleton with one weight-sharing cell per position:

- stem: 3x3 conv to ``C`` channels + BatchNorm;
- 3 stages of ``N`` cells at ``C``, ``2C``, ``4C`` channels, with NAS-Bench-201's residual reduction block
  between stages (ReLU-conv3x3 stride 2-BN, ReLU-conv3x3-BN, plus a shortcut avg-pool 2x2 + 1x1 conv);
- BN-ReLU, global average pool, linear.

Each cell computes node j = sum over i < j of op_ij(node i) and outputs node 3. A :class:`SharedEdge` holds all
five candidates of its edge (none = zeros, skip, ReLU-conv1x1-BN, ReLU-conv3x3-BN, avg-pool 3x3 stride 1 that
does not count padding) and runs only the op the sampled cell names (single path, as RSPS / SPOS train), so only
the sampled candidates receive gradients. Every cell position has its own weights.

BatchNorm follows NAS-Bench-201's weight-sharing search: ``affine=False`` and ``track_running_stats=False``, so
every forward pass, evaluation included, normalises with the statistics of its own batch. Running averages
would mix the statistics of thousands of different paths and fit none of them. The consequence: evaluate in
batches of a fixed size (the bench uses 250 images), never image by image.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .spaces.nasbench201 import NB201_EDGES, NB201_OPS, NUM_NODES, NASBench201Cell


def _bn(channels: int) -> nn.BatchNorm2d:
    """Batch-statistics BatchNorm without affine parameters (NAS-Bench-201's search setting, see the module doc)."""
    return nn.BatchNorm2d(channels, affine=False, track_running_stats=False)


class ReLUConvBN(nn.Sequential):
    """ReLU, conv, BN: NAS-Bench-201's ``nor_conv`` ops and the reduction block's branches."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         _bn(c_out))


class ResidualReduction(nn.Module):
    """NAS-Bench-201's block between stages: halves the resolution, doubles the channels, with a residual path."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class SharedEdge(nn.Module):
    """Every candidate op of one edge; ``forward`` runs the named one only (single-path weight sharing)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict({
            "nor_conv_1x1": ReLUConvBN(channels, channels, 1),
            "nor_conv_3x3": ReLUConvBN(channels, channels, 3),
            "avg_pool_3x3": nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        })

    def forward(self, x: torch.Tensor, op: str) -> torch.Tensor:
        if op == "none":
            return torch.zeros_like(x)
        if op == "skip_connect":
            return x
        return self.candidates[op](x)


class SharedCell(nn.Module):
    """One cell position: 6 shared edges; node j sums its incoming edges, node 3 is the output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(SharedEdge(channels) for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, cell: NASBench201Cell) -> torch.Tensor:
        nodes = [x]
        k = 0
        for j in range(1, NUM_NODES):
            total = self.edges[k](nodes[0], cell.ops[k])
            for i in range(1, j):
                total = total + self.edges[k + i](nodes[i], cell.ops[k + i])
            nodes.append(total)
            k += j
        return nodes[-1]


class Supernet(nn.Module):
    """NAS-Bench-201's skeleton (``C`` stem channels, ``N`` cells per stage) with weight-sharing cells.

    ``forward(x, cell)`` runs the path of ``cell`` (a :class:`NASBench201Cell`) through every cell position; the
    weights a path does not use are left untouched, so a uniform sampler trains each candidate on about a fifth
    of the steps.
    """

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        if channels < 1 or cells_per_stage < 1:
            raise ValueError(f"channels and cells_per_stage must be >= 1, got {channels}, {cells_per_stage}")
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), _bn(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(SharedCell(c) for _ in range(cells_per_stage))
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(_bn(c), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, cell: NASBench201Cell) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, cell) if isinstance(layer, SharedCell) else layer(x)
        x = self.head(x)
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def uniform_cell(generator: torch.Generator) -> NASBench201Cell:
    """A cell with each edge's op drawn uniformly from the 5 (the RSPS / SPOS sampler)."""
    picks = torch.randint(len(NB201_OPS), (len(NB201_EDGES),), generator=generator).tolist()
    return NASBench201Cell(tuple(NB201_OPS[p] for p in picks))
