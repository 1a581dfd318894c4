"""One generic NASNet cell, built from a ``CellGenotype``: NASNet-A and every searched cell use this code."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .genotypes import Block, CellGenotype
from .layers.drop_path import ScheduledDropPath
from .layers.ops import BNConfig, CellOp, ConvBN, FactorizedReduce, Identity, build_op

#: The two ops of a block, in the order of ``Block.inputs`` and ``Block.ops``.
SIDES: tuple[str, str] = ("left", "right")


class Cell(nn.Module):
    """A Normal or Reduction cell (TF-slim ``NasNetABaseCell`` semantics).

    Args:
        genotype: blocks and output concat list.
        reduction: ops reading the cell inputs use stride 2.
        in_channels: channels of h_i, the cell input.
        prev_channels: channels of h_{i-1}; ``None`` when there is none (the cell then reads h_i as h_{i-1}).
        prev_is_larger: h_{i-1} has twice the resolution of h_i (it came before a reduction).
        filters: the cell's filter count F; every op outputs F channels.
        fixed_output: end with ReLU -> 1x1 conv -> BN to F channels (ENAS's cell output), so the output width no
            longer depends on the genotype; TF-slim's NASNet concatenates (False).
    """

    def __init__(self, genotype: CellGenotype, *, reduction: bool, in_channels: int, prev_channels: int | None,
                 prev_is_larger: bool, filters: int, padding: str = "tf", bn: BNConfig = BNConfig(),
                 drop_path: ScheduledDropPath | None = None, fixed_output: bool = False) -> None:
        super().__init__()
        self.genotype = genotype
        self.reduction = reduction
        self.filters = filters
        self.pre0, self.pre1, state1_channels = cell_inputs(in_channels, prev_channels, prev_is_larger, filters, bn)

        channels = [filters, state1_channels]
        downsampled = [False, False]  # relative to the cell input
        self.blocks = nn.ModuleList()
        for block in genotype.blocks:
            pair = nn.ModuleDict()
            for side, idx, op in zip(SIDES, block.inputs, block.ops):
                stride = 2 if reduction and idx < 2 else 1
                pair[side] = build_op(op, channels[idx], filters, stride, padding=padding, bn=bn)
            self.blocks.append(pair)
            channels.append(filters if block.combiner == "add" else 2 * filters)
            downsampled.append(reduction)

        # TF's _combine_unused_states: align every concatenated state to the last state's shape.
        final_channels, final_down = channels[-1], downsampled[-1]
        self.align = nn.ModuleDict()
        for idx in genotype.concat:
            if (module := state_aligner(channels[idx], downsampled[idx] != final_down, final_channels, bn)) is not None:
                self.align[str(idx)] = module
        self.out_channels = sum(final_channels if str(i) in self.align else channels[i] for i in genotype.concat)
        self.output_conv: CellOp | None = None
        if fixed_output:
            self.output_conv = ConvBN(self.out_channels, filters, 1, relu_first=True, bn=bn)
            self.out_channels = filters
        self.drop_path = drop_path if drop_path is not None else ScheduledDropPath(1.0)

    def block_op(self, b: int, side: str, x: torch.Tensor) -> torch.Tensor:
        """Block ``b``'s ``side`` op on its input; the supernet's cell picks it from shared candidates instead."""
        return self.blocks[b][side](x)

    def output(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """The cell output from all its states: the concat list, then the fixed-width conv if there is one."""
        out = cell_output(self.genotype, self.align, states)
        return out if self.output_conv is None else self.output_conv(out)

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.pre0(x), self.pre1(x if prev is None else prev)]
        for b, block in enumerate(self.genotype.blocks):
            left, right = (self.block_op(b, side, states[i]) for side, i in zip(SIDES, block.inputs))
            if block.ops[0] != "identity":  # drop path never drops an identity (TF-slim)
                left = self.drop_path(left)
            if block.ops[1] != "identity":
                right = self.drop_path(right)
            states.append(combine(block, left, right))
        return self.output(states)


def cell_inputs(in_channels: int, prev_channels: int | None, prev_is_larger: bool, filters: int,
                bn: BNConfig) -> tuple[CellOp, CellOp, int]:
    """The adapters of a cell's two inputs (``pre0`` for h_i, ``pre1`` for h_{i-1}) and the width of state 1."""
    pre0 = ConvBN(in_channels, filters, 1, relu_first=True, bn=bn)
    if prev_channels is None:
        return pre0, Identity(), in_channels
    if prev_is_larger:
        return pre0, FactorizedReduce(prev_channels, filters, relu_first=True, bn=bn), filters
    if prev_channels != filters:
        return pre0, ConvBN(prev_channels, filters, 1, relu_first=True, bn=bn), filters
    return pre0, Identity(), prev_channels


def state_aligner(channels: int, downsample: bool, final_channels: int, bn: BNConfig) -> CellOp | None:
    """What makes a concatenated state the last state's shape (TF's ``_combine_unused_states``); None: nothing."""
    if downsample:
        return FactorizedReduce(channels, final_channels, relu_first=False, bn=bn)
    if channels != final_channels:
        return ConvBN(channels, final_channels, 1, relu_first=False, bn=bn)
    return None


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
