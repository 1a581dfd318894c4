"""The eval-only twin of a ``Cell``: BN folded, ReLUs shared, parallel separable convs run as grouped convs.

Only the scheduling lives here (stages of independent blocks, ops grouped by ``CellOp.group_key``, each
state's ReLU computed once); every op brings its own inference form (``CellOp.fuse``), and the blocks combine
and the cell output concatenates with the eager cell's own ``combine`` and ``cell_output``.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..cell import Cell, cell_output, combine
from ..layers.ops import CellOp

__all__ = ["FusedCell", "ReluMemo"]


@dataclass(frozen=True)
class _Stage:
    """Blocks whose inputs are all computed before the stage starts, and their grouped ops.

    ``groups`` holds, per op group of the stage, its index and the (op key, input state) of its members.
    """
    blocks: tuple[int, ...]
    groups: tuple[tuple[int, tuple[tuple[str, int], ...]], ...]


def _block_stages(cell: Cell) -> list[tuple[int, ...]]:
    """Blocks by dependency depth: a block runs one stage after the latest block it reads."""
    depth = [0, 0]
    for block in cell.genotype.blocks:
        depth.append(1 + max(depth[i] for i in block.inputs))
    stages: dict[int, list[int]] = {}
    for index, level in enumerate(depth[2:]):
        stages.setdefault(level, []).append(index)
    return [tuple(stages[level]) for level in sorted(stages)]


class ReluMemo:
    """ReLU of the latest cell outputs, shared by the cells of one model.

    Cell i's output is read through a ReLU by cell i+1 (as its input) and again by cell i+2 (as its previous
    input): the memo computes it once. Entries are found by identity (weak references: the memo keeps no
    cell output alive) and each thread has its own. Evicted results are kept as spare buffers, one per
    layout for the ``layouts`` latest layouts, and reused by later ReLUs of that layout, in this call or the
    next: a fresh buffer for a large map costs more in page faults than the ReLU itself (57 MB at batch 8 in
    Large: 16 ms fresh, 2.4 ms reused). A returned tensor stays valid until ``size`` newer misses; the cells
    consume it at once.
    """

    def __init__(self, size: int = 2, layouts: int = 8) -> None:
        self.size, self.layouts = size, layouts
        self._local = threading.local()

    def __getstate__(self) -> dict[str, int]:
        return {"size": self.size, "layouts": self.layouts}  # per-thread entries and buffers stay behind

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(**state)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        local = self._local
        if not hasattr(local, "entries"):
            local.entries, local.spares = deque(), OrderedDict()
        for source, value in local.entries:
            if source() is x:
                return value
        if len(local.entries) == self.size:
            self._keep_spare(local.spares, local.entries.popleft()[1])
        if torch.is_grad_enabled() and x.requires_grad:  # out= cannot record autograd: no reuse then
            spare = None
        else:
            spare = local.spares.pop(_layout(x, torch.is_inference_mode_enabled()), None)
        value = F.relu(x) if spare is None else torch.clamp_min(x, 0, out=spare)
        local.entries.append((weakref.ref(x), value))
        return value

    def _keep_spare(self, spares: OrderedDict, buffer: torch.Tensor) -> None:
        if buffer.requires_grad:
            return  # part of an autograd graph: not ours to overwrite
        key = _layout(buffer, buffer.is_inference())
        spares[key] = buffer
        spares.move_to_end(key)
        while len(spares) > self.layouts:
            spares.popitem(last=False)


def _layout(x: torch.Tensor, inference: bool) -> tuple:
    """What a spare must match to take a ReLU of ``x``; inference-mode tensors only serve inference mode."""
    return tuple(x.shape), x.stride(), x.dtype, x.device, inference


class FusedCell(nn.Module):
    """Eval-only twin of a ``Cell``: BN folded, each state's ReLU computed once, no drop path.

    Ops of one stage with equal ``group_key`` (separable convs reading inputs of one shape) run as one group
    (``fuse_group``: a ``SepConvGroup``); every other op runs its own ``fuse()`` form.
    """

    def __init__(self, cell: Cell, relu_memo: ReluMemo | None = None) -> None:
        """Takes over ``cell``'s modules and folds its BNs in place: pass a copy you no longer need.

        ``relu_memo``: shared by all cells of a model so each cell output goes through one ReLU, not two.
        """
        super().__init__()
        self._relu = relu_memo or ReluMemo()
        self.genotype = cell.genotype
        self.out_channels = cell.out_channels
        self.pre0_relu, self.pre0 = cell.pre0.fuse()
        self.pre1_relu, self.pre1 = cell.pre1.fuse()
        self.ops = nn.ModuleDict()
        self.groups = nn.ModuleList()
        self._reads_relu: dict[str, bool] = {}
        self._same_as: dict[str, str] = {}  # op key -> key of an identical op on the same input, computed once
        computed: dict[tuple, str] = {}
        stages = []
        for blocks in _block_stages(cell):
            by_group: dict[tuple, list[tuple[str, int, CellOp]]] = {}
            for b in blocks:
                for side, (name, op) in enumerate(cell.blocks[b].items()):
                    key, state = f"{b}_{name}", self.genotype.blocks[b].inputs[side]
                    result = op.result_key()
                    if (group := op.group_key()) is not None:
                        by_group.setdefault((type(op), group), []).append((key, state, op))
                    elif result is not None and (result, state) in computed:
                        self._same_as[key] = computed[result, state]
                    else:
                        if result is not None:
                            computed[result, state] = key
                        self._reads_relu[key], self.ops[key] = op.fuse()
            groups = []
            for (kind, _), members in by_group.items():
                self.groups.append(kind.fuse_group([op for *_, op in members]))
                groups.append((len(self.groups) - 1, tuple((key, state) for key, state, _ in members)))
            stages.append(_Stage(blocks, tuple(groups)))
        self._stages = stages
        # Per block, the keys of the results its left and right sides read (an identical op's, when shared).
        self._operands = [tuple(self._same_as.get(f"{b}_{name}", f"{b}_{name}") for name in ("left", "right"))
                          for b in range(len(self.genotype.blocks))]
        # A block adds in place into its left result only if that tensor is its own: not a state passed through
        # by an identity, not a result another op shares.
        grouped = {key for stage in stages for _, members in stage.groups for key, _ in members}
        shared = set(self._same_as) | set(self._same_as.values())
        self._add_in_place = [
            block.combiner == "add" and f"{b}_left" not in shared
            and (f"{b}_left" in grouped or not isinstance(self.ops[f"{b}_left"], nn.Identity))
            for b, block in enumerate(self.genotype.blocks)]
        self.align = nn.ModuleDict({key: self._fuse_align(op) for key, op in cell.align.items()})
        self.output_conv = cell.output_conv.fuse().body if cell.output_conv is not None else None  # reads a ReLU

    @staticmethod
    def _fuse_align(op: CellOp) -> nn.Module:
        reads_relu, body = op.fuse()
        assert not reads_relu, "cell-output alignment never starts with a ReLU"
        return body

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        prev = x if prev is None else prev
        states: list[torch.Tensor | None] = [self.pre0(self._relu(x) if self.pre0_relu else x),
                                             self.pre1(self._relu(prev) if self.pre1_relu else prev)]
        states += [None] * len(self.genotype.blocks)
        relu_of: dict[int, torch.Tensor] = {}  # by id: ``states`` keeps every key alive during the call

        def relu(state: torch.Tensor) -> torch.Tensor:
            if state is x or state is prev:  # h_{i-1} passed through unchanged: share the model's memo
                return self._relu(state)
            if id(state) not in relu_of:
                relu_of[id(state)] = F.relu(state)
            return relu_of[id(state)]

        def read(index: int, reads_relu: bool) -> torch.Tensor:
            return relu(states[index]) if reads_relu else states[index]

        results: dict[str, torch.Tensor] = {}
        for stage in self._stages:
            for group_index, members in stage.groups:
                outputs = self.groups[group_index]([states[state] for _, state in members], relu)
                results.update({key: y for (key, _), y in zip(members, outputs)})
            for b in stage.blocks:
                block = self.genotype.blocks[b]
                for key, state in zip(self._operands[b], block.inputs):
                    if key not in results:
                        results[key] = self.ops[key](read(state, self._reads_relu[key]))
                left, right = (results[key] for key in self._operands[b])
                in_place = self._add_in_place[b] and not (left.requires_grad and torch.is_grad_enabled())
                states[2 + b] = combine(block, left, right, in_place=in_place)
        out = cell_output(self.genotype, self.align, states)
        return out if self.output_conv is None else self.output_conv(F.relu(out))
