"""The shared weights of every child (ENAS, Pham et al. 2018): one network that holds all paths of the space.

Every genotype the controller can sample is a path through :class:`Supernet`: the CIFAR stem, N cells per
stack and F filters of the proxy child (``build_nasnet(..., stem="cifar")``), with op weights kept per
(cell, block, side, input, op) and per input width (a block read after a ``concat`` combiner has 2F channels,
after ``add`` F; the stand-alone child builds a differently shaped op for each, so the supernet keeps both).
Only the sampled path runs.

Widths that depend on the genotype (a cell outputs the concatenation of a genotype-dependent set of states, F
or 2F channels each) meet shared weights through a *slot layout*: every consumer of a cell output (the next
cells' 1x1 input convolutions and factorized reductions, and the classifier) owns one weight column block per
state the cell could output, 2F columns wide, and a genotype uses the columns of the states it concatenates.
This is exactly the stand-alone child's computation with sub-matrices of shared weights, so
:meth:`Supernet.extract` copies a path into a ``build_nasnet`` network that computes the same function.

What differs from a stand-alone child: BatchNorm keeps no running averages (a running mean over thousands of
different children describes none of them), so it always normalizes with the statistics of the batch at hand,
in training and in reward evaluation; and the weights are trained by many children, not by one.
The slot layer is hand-written because no library offers weights that are gathered per call by a layout.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..genotypes import NUM_CELL_INPUTS, OPS, CellGenotype, Genotype
from ..layers.ops import BNConfig, ConvBN, FactorizedReduce, build_op
from ..factory import create_model
from ..nasnet import NASNet, NASNetConfig, _STEM_DEFAULTS, _plan_cells

#: Which state occupies each piece of a cell output, and that piece's width: ((state index, channels), ...).
Layout = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PathOp:
    """One op of a genotype's path, as the structure test compares it with the stand-alone child."""

    cell: str
    block: int
    side: str
    input: int
    op: str
    stride: int
    in_channels: int


def _untracked_batchnorm(module: nn.Module) -> None:
    """Batch statistics always (see the module docstring): no running averages, no buffers to sync."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.register_buffer("running_mean", None)
            m.register_buffer("running_var", None)
            m.register_buffer("num_batches_tracked", None)


class _SlotWeights(nn.Module):
    """Columns of a weight matrix per slot; ``columns(layout)`` gives the input channels a layout occupies."""

    def __init__(self, slot_widths: list[int]) -> None:
        super().__init__()
        self.slot_widths = slot_widths
        self.offsets = [sum(slot_widths[:i]) for i in range(len(slot_widths))]
        self.total = sum(slot_widths)
        self._cache: dict[tuple[Layout, torch.device], torch.Tensor] = {}

    def columns(self, layout: Layout, device: torch.device) -> torch.Tensor:
        key = (layout, device)
        if key not in self._cache:
            for slot, width in layout:
                if width > self.slot_widths[slot]:
                    raise ValueError(f"state {slot} is {width} channels wide; its slot holds {self.slot_widths[slot]}")
            self._cache[key] = torch.cat([torch.arange(self.offsets[s], self.offsets[s] + w) for s, w in layout]
                                         ).to(device)
        return self._cache[key]


class SlotConvBN(_SlotWeights):
    """[ReLU ->] 1x1 conv -> BN whose input is a layout of slots (``ConvBN`` of the stand-alone cell)."""

    def __init__(self, slot_widths: list[int], out_channels: int, *, relu_first: bool, bn: BNConfig) -> None:
        super().__init__(slot_widths)
        self.relu_first = relu_first
        self.weight = nn.Parameter(torch.empty(out_channels, self.total, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default initialisation
        self.bn = bn(out_channels)

    def weight_for(self, layout: Layout) -> torch.Tensor:
        return self.weight.index_select(1, self.columns(layout, self.weight.device))

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        if self.relu_first:
            x = F.relu(x)
        return self.bn(F.conv2d(x, self.weight_for(layout)))


class SlotFactorizedReduce(_SlotWeights):
    """``FactorizedReduce`` (two shifted stride-2 1x1 paths, then BN) over a layout of slots."""

    def __init__(self, slot_widths: list[int], out_channels: int, *, bn: BNConfig) -> None:
        super().__init__(slot_widths)
        half = out_channels // 2
        self.path1 = nn.Parameter(torch.empty(half, self.total, 1, 1))
        self.path2 = nn.Parameter(torch.empty(out_channels - half, self.total, 1, 1))
        for p in (self.path1, self.path2):
            nn.init.kaiming_uniform_(p, a=5 ** 0.5)
        self.bn = bn(out_channels)

    def weights_for(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        cols = self.columns(layout, self.path1.device)
        return self.path1.index_select(1, cols), self.path2.index_select(1, cols)

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        x = F.relu(x)
        w1, w2 = self.weights_for(layout)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([F.conv2d(x, w1, stride=2), F.conv2d(shifted, w2, stride=2)], dim=1))


class SlotLinear(_SlotWeights):
    """The classifier over the last cell's layout."""

    def __init__(self, slot_widths: list[int], out_features: int) -> None:
        super().__init__(slot_widths)
        reference = nn.Linear(self.total, out_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone())

    def weight_for(self, layout: Layout) -> torch.Tensor:
        return self.weight.index_select(1, self.columns(layout, self.weight.device))

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        return F.linear(x, self.weight_for(layout), self.bias)


def _key(*parts: object) -> str:
    return "_".join(str(p) for p in parts)


class SharedCell(nn.Module):
    """All paths of one Normal or Reduction cell position.

    ``x_slots``/``prev_slots``: slot widths of the layouts this cell reads (``None`` when there is no h_{i-1});
    ``x_fixed_width``: channels of h_i when it is not a cell output (the stem), which ops then read directly.
    """

    def __init__(self, name: str, *, num_blocks: int, reduction: bool, filters: int, x_slots: list[int],
                 prev_slots: list[int] | None, prev_is_larger: bool, x_fixed_width: int | None,
                 bn: BNConfig) -> None:
        super().__init__()
        self.name, self.reduction, self.filters, self.num_blocks = name, reduction, filters, num_blocks
        self.pre0 = SlotConvBN(x_slots, filters, relu_first=True, bn=bn)
        self.has_prev = prev_slots is not None
        self.prev_is_larger = prev_is_larger
        if prev_slots is None:
            if x_fixed_width is None:
                raise ValueError(f"{name}: a cell without h_(i-1) reads h_i raw, so h_i must have a fixed width")
            self.pre1: nn.Module | None = None
            state1 = x_fixed_width
        elif prev_is_larger:
            self.pre1 = SlotFactorizedReduce(prev_slots, filters, bn=bn)
            state1 = filters
        else:
            self.pre1 = SlotConvBN(prev_slots, filters, relu_first=True, bn=bn)
            state1 = filters
        self.state1_width = state1

        self.ops = nn.ModuleDict()
        for b in range(num_blocks):
            for side in ("left", "right"):
                for i in range(NUM_CELL_INPUTS + b):
                    stride = 2 if reduction and i < NUM_CELL_INPUTS else 1
                    for width in self._input_widths(i):
                        for op in OPS:
                            self.ops[_key(b, side, i, width, op)] = build_op(op, width, filters, stride, bn=bn)
        # TF's _combine_unused_states: any state may be concatenated; align it to the last state's width.
        self.align = nn.ModuleDict()
        for i in range(NUM_CELL_INPUTS + num_blocks):
            for width in self._input_widths(i):
                for final in (filters, 2 * filters):
                    module = self._aligner(i, width, final, bn)
                    if module is not None:
                        self.align[_key(i, width, final)] = module
        self.out_slots = [2 * filters] * (NUM_CELL_INPUTS + num_blocks)

    def _input_widths(self, i: int) -> list[int]:
        if i == 0:
            return [self.filters]
        if i == 1:
            return [self.state1_width]
        return [self.filters, 2 * self.filters]

    def _aligner(self, i: int, width: int, final: int, bn: BNConfig) -> nn.Module | None:
        downsampled = self.reduction and i >= NUM_CELL_INPUTS
        if self.reduction and not downsampled:
            return FactorizedReduce(width, final, relu_first=False, bn=bn)
        if width != final:
            return ConvBN(width, final, 1, relu_first=False, bn=bn)
        return None

    # ---- the path of one genotype -------------------------------------------------------------------------------
    def uses_pre1(self, prev_layout: Layout | None) -> bool:
        """The stand-alone cell passes h_{i-1} through untouched when it already has F channels."""
        if not self.has_prev:
            return False
        return self.prev_is_larger or sum(w for _, w in prev_layout) != self.filters  # type: ignore[union-attr]

    def state_widths(self, genotype: CellGenotype, prev_layout: Layout | None) -> list[int]:
        state1 = self.state1_width if (not self.has_prev or self.uses_pre1(prev_layout)) else self.filters
        widths = [self.filters, state1]
        widths += [self.filters if block.combiner == "add" else 2 * self.filters for block in genotype.blocks]
        return widths

    def output_layout(self, genotype: CellGenotype, prev_layout: Layout | None) -> Layout:
        final = self.state_widths(genotype, prev_layout)[-1]
        return tuple((i, final) for i in genotype.concat)

    def check(self, genotype: CellGenotype) -> None:
        if len(genotype.blocks) != self.num_blocks:
            raise ValueError(f"{self.name}: genotype has {len(genotype.blocks)} blocks; the supernet has "
                             f"{self.num_blocks}")

    def path(self, genotype: CellGenotype, prev_layout: Layout | None) -> Iterator[tuple[str, int, int, str, nn.Module]]:
        """(side, block, input, op, module) of every op the genotype runs."""
        widths = self.state_widths(genotype, prev_layout)
        for b, block in enumerate(genotype.blocks):
            for side, i, op in zip(("left", "right"), block.inputs, block.ops):
                yield side, b, i, op, self.ops[_key(b, side, i, widths[i], op)]

    def aligners(self, genotype: CellGenotype, prev_layout: Layout | None) -> dict[int, nn.Module]:
        widths = self.state_widths(genotype, prev_layout)
        return {i: self.align[_key(i, widths[i], widths[-1])] for i in genotype.concat
                if _key(i, widths[i], widths[-1]) in self.align}

    def forward(self, x: torch.Tensor, x_layout: Layout, prev: torch.Tensor | None, prev_layout: Layout | None,
                genotype: CellGenotype) -> tuple[torch.Tensor, Layout]:
        states = [self.pre0(x, x_layout)]
        if not self.has_prev:
            states.append(x)
        elif self.uses_pre1(prev_layout):
            states.append(self.pre1(prev, prev_layout))  # type: ignore[misc]
        else:
            states.append(prev)  # type: ignore[arg-type]
        ops = list(self.path(genotype, prev_layout))
        for b, block in enumerate(genotype.blocks):
            left, right = (module(states[i]) for _, _, i, _, module in ops[2 * b:2 * b + 2])
            states.append(left + right if block.combiner == "add" else torch.cat([left, right], dim=1))
        align = self.aligners(genotype, prev_layout)
        out = torch.cat([align[i](states[i]) if i in align else states[i] for i in genotype.concat], dim=1)
        return out, self.output_layout(genotype, prev_layout)


class Supernet(nn.Module):
    """Every child of the NASNet space at once; ``forward(x, genotype)`` runs that genotype's path only."""

    def __init__(self, *, num_blocks: int = 5, cells_per_stack: int = 2, filters: int = 8, num_classes: int = 10,
                 image_size: int = 32) -> None:
        super().__init__()
        settings = dict(_STEM_DEFAULTS["cifar"], image_size=image_size, aux_head=False)
        self.config = NASNetConfig(cells_per_stack=cells_per_stack, num_conv_filters=filters, stem="cifar",
                                   num_classes=num_classes, **settings)
        self.config.validate()
        self.num_blocks = num_blocks
        bn = BNConfig(self.config.bn_eps, self.config.bn_momentum)
        stem_filters = self.config.stem_filters
        self.stem = nn.Sequential(OrderedDict(conv=nn.Conv2d(self.config.in_chans, stem_filters, 3, padding=1,
                                                             bias=False), bn=bn(stem_filters)))
        self._plans = _plan_cells(self.config)
        # Per trunk output (0 = the stem, k = the k-th cell): its slot widths, fixed width and stride.
        slots: list[list[int]] = [[stem_filters]]
        fixed: list[int | None] = [stem_filters]
        strides = [1]
        self.cells = nn.ModuleDict()
        for plan in self._plans:
            prev_larger = plan.prev is not None and strides[plan.prev] < strides[plan.x]
            cell = SharedCell(plan.name, num_blocks=num_blocks, reduction=plan.reduction, filters=plan.filters,
                              x_slots=slots[plan.x], prev_slots=slots[plan.prev] if plan.prev is not None else None,
                              prev_is_larger=prev_larger, x_fixed_width=fixed[plan.x], bn=bn)
            self.cells[plan.name] = cell
            slots.append(cell.out_slots)
            fixed.append(None)
            strides.append(strides[plan.x] * (2 if plan.reduction else 1))
        self.classifier = SlotLinear(slots[-1], num_classes)
        _untracked_batchnorm(self)

    def _layouts(self, genotype: Genotype) -> list[Layout]:
        """The layout of every trunk output for ``genotype`` (no tensors involved)."""
        layouts: list[Layout] = [((0, self.config.stem_filters),)]
        for plan in self._plans:
            cell: SharedCell = self.cells[plan.name]  # type: ignore[assignment]
            g = genotype.reduction if plan.reduction else genotype.normal
            layouts.append(cell.output_layout(g, layouts[plan.prev] if plan.prev is not None else None))
        return layouts

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        for plan in self._plans:
            self.cells[plan.name].check(genotype.reduction if plan.reduction else genotype.normal)
        outputs: list[tuple[torch.Tensor, Layout]] = [(self.stem(x), ((0, self.config.stem_filters),))]
        for plan in self._plans:
            g = genotype.reduction if plan.reduction else genotype.normal
            h, h_layout = outputs[plan.x]
            prev, prev_layout = outputs[plan.prev] if plan.prev is not None else (None, None)
            outputs.append(self.cells[plan.name](h, h_layout, prev, prev_layout, g))
        features, layout = outputs[-1]
        return self.classifier(F.relu(features).mean((2, 3)), layout)

    def path(self, genotype: Genotype) -> list[PathOp]:
        """The ops a genotype runs, with their inputs, strides and input widths, cell by cell."""
        layouts = self._layouts(genotype)
        out = []
        for plan in self._plans:
            cell: SharedCell = self.cells[plan.name]  # type: ignore[assignment]
            g = genotype.reduction if plan.reduction else genotype.normal
            widths = cell.state_widths(g, layouts[plan.prev] if plan.prev is not None else None)
            for side, b, i, op, _ in cell.path(g, layouts[plan.prev] if plan.prev is not None else None):
                out.append(PathOp(plan.name, b, side, i, op, 2 if plan.reduction and i < NUM_CELL_INPUTS else 1,
                                  widths[i]))
        return out

    @torch.no_grad()
    def extract(self, genotype: Genotype) -> NASNet:
        """The stand-alone child (``create_model(genotype, ...)`` with this supernet's N, F and stem) holding the path's weights.

        It computes what ``forward(x, genotype)`` computes (in training mode, where both use batch statistics),
        so a searched cell can start its stand-alone training from the shared weights.
        """
        cfg = self.config
        child = create_model(genotype, cells_per_stack=cfg.cells_per_stack, num_conv_filters=cfg.num_conv_filters,
                             stem="cifar", num_classes=cfg.num_classes, image_size=cfg.image_size, aux_head=False)
        child = child.to(self.stem.conv.weight.device)
        _copy(self.stem, child.stem)
        layouts = self._layouts(genotype)
        for plan in self._plans:
            cell: SharedCell = self.cells[plan.name]  # type: ignore[assignment]
            target = child.cells[plan.name]
            g = genotype.reduction if plan.reduction else genotype.normal
            x_layout, prev_layout = layouts[plan.x], layouts[plan.prev] if plan.prev is not None else None
            target.pre0.conv.weight.copy_(cell.pre0.weight_for(x_layout))
            _copy(cell.pre0.bn, target.pre0.bn)
            if cell.uses_pre1(prev_layout):
                if cell.prev_is_larger:
                    target.pre1.path1.weight.copy_(cell.pre1.weights_for(prev_layout)[0])
                    target.pre1.path2.weight.copy_(cell.pre1.weights_for(prev_layout)[1])
                else:
                    target.pre1.conv.weight.copy_(cell.pre1.weight_for(prev_layout))
                _copy(cell.pre1.bn, target.pre1.bn)
            for side, b, _, _, module in cell.path(g, prev_layout):
                _copy(module, target.blocks[b][side])
            for i, module in cell.aligners(g, prev_layout).items():
                _copy(module, target.align[str(i)])
        child.classifier.weight.copy_(self.classifier.weight_for(layouts[-1]))
        child.classifier.bias.copy_(self.classifier.bias)
        return child


def _copy(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters by name; the shapes must agree, which checks that both are the same layer."""
    params = dict(source.named_parameters())
    names = [n for n, _ in target.named_parameters()]
    if sorted(names) != sorted(params):
        raise RuntimeError(f"{type(source).__name__} and {type(target).__name__} differ: {sorted(params)} vs {names}")
    for name, p in target.named_parameters():
        p.copy_(params[name])


AMP_MODES = ("auto", "off", "fp16", "bf16")


@dataclass
class SharedConfig:
    """Settings of a shared-weight search (``shared.*``); the network and data sizes are the ``child.*`` keys."""

    train_steps: int = 50          # supernet minibatches per round, one sampled child each
    controller_updates: int = 5    # PPO minibatches (ppo.minibatch children each) per round
    eval_batch_size: int = 64      # held-out validation images behind each child's reward
    grad_clip: float = 5.0         # gradient-norm clip of the shared weights (ENAS: 5); 0 = none
    device: str = "auto"           # auto = the torchrun process's GPU when there is one, else cpu
    amp: str = "auto"              # auto = float16 autocast + grad scaler on CUDA, off on CPU; or off/fp16/bf16
    threads: int = 0               # torch intra-op threads of the search process (0 = leave torch's default)

    def validate(self) -> None:
        if self.train_steps < 0 or self.controller_updates < 1 or self.eval_batch_size < 1:
            raise ValueError(f"shared.train_steps must be >= 0, shared.controller_updates and "
                             f"shared.eval_batch_size >= 1; got {self.train_steps}, {self.controller_updates}, "
                             f"{self.eval_batch_size}")
        if self.grad_clip < 0 or self.threads < 0:
            raise ValueError(f"shared.grad_clip and shared.threads must be >= 0, got {self.grad_clip}, {self.threads}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown shared.amp {self.amp!r}; expected one of {', '.join(AMP_MODES)}")
        if self.device != "auto":
            device = torch.device(self.device)  # raises on a malformed name
            if device.type not in ("cpu", "cuda"):
                raise ValueError(f"shared.device must be auto, cpu or cuda, got {self.device!r}")
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"shared.device={self.device!r} but torch sees no CUDA GPU; use shared.device cpu")
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("shared.amp fp16 needs CUDA; on CPU use shared.amp bf16 or off")
