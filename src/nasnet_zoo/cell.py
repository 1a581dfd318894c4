"""One generic NASNet cell, built from a ``CellGenotype``: NASNet-A and every searched cell use this code."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .genotypes import Block, CellGenotype
from .layers.drop_path import ScheduledDropPath
from .layers.ops import BNConfig, CellOp, ConvBN, FactorizedReduce, Identity, build_op


class Cell(nn.Module):
    """A Normal or Reduction cell (TF-slim ``NasNetABaseCell`` semantics).

    Args:
        genotype: blocks and output concat list.
        reduction: ops reading the cell inputs use stride 2.
        in_channels: channels of h_i, the cell input.
        prev_channels: channels of h_{i-1}; ``None`` when there is none (the cell then reads h_i as h_{i-1}).
        prev_is_larger: h_{i-1} has twice the resolution of h_i (it came before a reduction).
        filters: the cell's filter count F; every op outputs F channels.
    """

    def __init__(self, genotype: CellGenotype, *, reduction: bool, in_channels: int, prev_channels: int | None,
                 prev_is_larger: bool, filters: int, padding: str = "tf", bn: BNConfig = BNConfig(),
                 drop_path: ScheduledDropPath | None = None) -> None:
        super().__init__()
        self.genotype = genotype
        self.reduction = reduction
        self.filters = filters
        self.pre0 = ConvBN(in_channels, filters, 1, relu_first=True, bn=bn)
        if prev_channels is None:
            self.pre1: CellOp = Identity()
            state1_channels = in_channels
        elif prev_is_larger:
            self.pre1 = FactorizedReduce(prev_channels, filters, relu_first=True, bn=bn)
            state1_channels = filters
        elif prev_channels != filters:
            self.pre1 = ConvBN(prev_channels, filters, 1, relu_first=True, bn=bn)
            state1_channels = filters
        else:
            self.pre1 = Identity()
            state1_channels = prev_channels

        channels = [filters, state1_channels]
        downsampled = [False, False]  # relative to the cell input
        self.blocks = nn.ModuleList()
        for block in genotype.blocks:
            pair = nn.ModuleDict()
            for side, idx, op in zip(("left", "right"), block.inputs, block.ops):
                stride = 2 if reduction and idx < 2 else 1
                pair[side] = build_op(op, channels[idx], filters, stride, padding=padding, bn=bn)
            self.blocks.append(pair)
            channels.append(filters if block.combiner == "add" else 2 * filters)
            downsampled.append(reduction)
        self._droppable = [[op != "identity" for op in block.ops] for block in genotype.blocks]

        # TF's _combine_unused_states: align every concatenated state to the last state's shape.
        final_channels, final_down = channels[-1], downsampled[-1]
        self.align = nn.ModuleDict()
        for idx in genotype.concat:
            if downsampled[idx] != final_down:
                self.align[str(idx)] = FactorizedReduce(channels[idx], final_channels, relu_first=False, bn=bn)
            elif channels[idx] != final_channels:
                self.align[str(idx)] = ConvBN(channels[idx], final_channels, 1, relu_first=False, bn=bn)
        self.out_channels = sum(final_channels if str(i) in self.align else channels[i] for i in genotype.concat)
        self.drop_path = drop_path if drop_path is not None else ScheduledDropPath(1.0)

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.pre0(x), self.pre1(x if prev is None else prev)]
        for block, pair, droppable in zip(self.genotype.blocks, self.blocks, self._droppable):
            left = pair["left"](states[block.inputs[0]])
            right = pair["right"](states[block.inputs[1]])
            if droppable[0]:
                left = self.drop_path(left)
            if droppable[1]:
                right = self.drop_path(right)
            states.append(combine(block, left, right))
        return cell_output(self.genotype, self.align, states)


def combine(block: Block, left: torch.Tensor, right: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
    """A block's new state from its two op results: their sum, or their concatenation along channels.

    ``in_place`` adds into ``left``, for callers that own it and record no gradient through it.
    """
    if block.combiner == "concat":
        return torch.cat([left, right], dim=1)
    return left.add_(right) if in_place else left + right


def cell_output(genotype: CellGenotype, align: Mapping[str, nn.Module],
                states: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """The cell output: the ``concat`` states, each aligned to the last state's shape where needed."""
    return torch.cat([align[str(i)](states[i]) if str(i) in align else states[i] for i in genotype.concat], dim=1)
