"""The shared weights of every child (ENAS, Pham et al. 2018), built from the one NASNet.

:class:`Supernet` is a ``NASNet`` (same stem, wiring, trunk loop and head) whose cells are :class:`SharedCell`:
the project's ``Cell`` with its block ops drawn from :class:`~nasnet_zoo.layers.ops.ChoiceOp` candidates, so any
genotype of the search space is a path through it and only that path runs. Its design follows what was measured
(docs/search.md, "Weight sharing"):

- every cell ends with the fixed-width output (``cell_output="fixed"``: ReLU, 1x1 conv, BN to F channels), so
  no cell's output width, and not the classifier's input, depends on the path;
- op weights are shared per (cell, op, input width, stride): all blocks of a cell that apply ``sep_conv_3x3`` at
  stride 1 to an F-channel state use the same weights (one ``ChoiceOp`` per width and stride);
- the op vocabulary and the combiners are the search space's (``controller.ops``, ``controller.combiners``).

BatchNorm keeps no running averages (a running mean over thousands of different children describes none of
them): it always normalizes with the statistics of the batch at hand, in training and in reward evaluation.
:meth:`Supernet.extract` copies a path into the stand-alone ``create_model`` child with ``cell_output="fixed"``,
which computes the same function. The output conv's column selection (weights gathered per path by which states
the cell concatenates) is hand-written: no library offers weights chosen per call by a layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..cell import SIDES, Cell, cell_inputs, state_aligner
from ..engine import amp_setting
from ..factory import create_model
from ..genotypes import NUM_CELL_INPUTS, CellGenotype, Genotype
from ..layers.drop_path import ScheduledDropPath
from ..layers.ops import BNConfig, ChoiceOp
from ..nasnet import NASNet, nasnet_config
from .spaces import NASNetSpace

#: The states a cell concatenates and the width each has there: ((state index, channels), ...).
Layout = tuple[tuple[int, int], ...]


def _untracked_batchnorm(module: nn.Module) -> None:
    """Batch statistics always (see the module docstring): no running averages, no buffers to sync."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.register_buffer("running_mean", None)
            m.register_buffer("running_var", None)
            m.register_buffer("num_batches_tracked", None)


class SlotOutputConv(nn.Module):
    """ReLU -> 1x1 conv -> BN over the states a path concatenates: one column block per state the cell could
    output, as wide as its widest form, of which a path uses the columns of its own states."""

    def __init__(self, num_states: int, slot_width: int, out_channels: int, *, bn: BNConfig) -> None:
        super().__init__()
        self.slot_width = slot_width
        self.weight = nn.Parameter(torch.empty(out_channels, num_states * slot_width, 1, 1))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Conv2d's default initialisation
        self.bn = bn(out_channels)
        self._columns: dict[tuple[Layout, torch.device], torch.Tensor] = {}

    def weight_for(self, layout: Layout) -> torch.Tensor:
        key = (layout, self.weight.device)
        if key not in self._columns:
            self._columns[key] = torch.cat([torch.arange(i * self.slot_width, i * self.slot_width + width)
                                            for i, width in layout]).to(self.weight.device)
        return self.weight.index_select(1, self._columns[key])

    def forward(self, x: torch.Tensor, layout: Layout) -> torch.Tensor:
        return self.bn(F.conv2d(F.relu(x), self.weight_for(layout)))


class SharedCell(Cell):
    """Every path of one Normal or Reduction cell position; ``genotype`` is the path that runs next.

    Takes ``Cell``'s arguments (the genotype only sizes the blocks) plus the space's ``ops`` and ``combiners``.
    """

    def __init__(self, genotype: CellGenotype, *, reduction: bool, in_channels: int, prev_channels: int | None,
                 prev_is_larger: bool, filters: int, padding: str = "tf", bn: BNConfig = BNConfig(),
                 drop_path: ScheduledDropPath | None = None, fixed_output: bool = True,
                 ops: Sequence[str], combiners: Sequence[str]) -> None:
        nn.Module.__init__(self)  # Cell.__init__ builds one genotype's ops; this cell builds every candidate
        if not fixed_output:
            raise ValueError("a supernet cell needs cell_output='fixed': its output width must not depend on the path")
        self.genotype, self.reduction, self.filters = genotype, reduction, filters
        self.num_blocks = len(genotype.blocks)
        self.pre0, self.pre1, self.state1_channels = cell_inputs(in_channels, prev_channels, prev_is_larger,
                                                                 filters, bn)
        block_widths = sorted({filters if c == "add" else 2 * filters for c in combiners})
        widths = [[filters], [self.state1_channels]] + [block_widths] * self.num_blocks
        self.choices = nn.ModuleDict()
        self.align = nn.ModuleDict()
        for i, options in enumerate(widths):
            stride = self._stride(i)
            for width in options:
                if f"{width}_{stride}" not in self.choices:
                    self.choices[f"{width}_{stride}"] = ChoiceOp(ops, width, filters, stride, padding=padding, bn=bn)
                for final in block_widths:  # TF's _combine_unused_states, for every width the last state may have
                    module = state_aligner(width, reduction and i < NUM_CELL_INPUTS, final, bn)
                    if module is not None:
                        self.align[f"{i}_{width}_{final}"] = module
        self.output_conv = SlotOutputConv(len(widths), max(block_widths), filters, bn=bn)
        self.out_channels = filters
        self.drop_path = drop_path if drop_path is not None else ScheduledDropPath(1.0)

    def _stride(self, i: int) -> int:
        return 2 if self.reduction and i < NUM_CELL_INPUTS else 1

    def state_widths(self, genotype: CellGenotype) -> list[int]:
        """Channels of every state of ``genotype``'s path through this cell."""
        return [self.filters, self.state1_channels] + [self.filters if b.combiner == "add" else 2 * self.filters
                                                       for b in genotype.blocks]

    def choice(self, i: int, width: int) -> ChoiceOp:
        """The shared candidates for an op reading state ``i`` of ``width`` channels."""
        return self.choices[f"{width}_{self._stride(i)}"]  # type: ignore[return-value]

    def block_op(self, b: int, side: str, x: torch.Tensor) -> torch.Tensor:
        block = self.genotype.blocks[b]
        k = SIDES.index(side)
        return self.choice(block.inputs[k], x.shape[1])(x, block.ops[k])

    def aligners(self, genotype: CellGenotype) -> dict[int, nn.Module]:
        """The aligner of every concatenated state that needs one, by state index."""
        widths = self.state_widths(genotype)
        keys = {i: f"{i}_{widths[i]}_{widths[-1]}" for i in genotype.concat}
        return {i: self.align[key] for i, key in keys.items() if key in self.align}

    def output(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        align = self.aligners(self.genotype)
        parts = [align[i](states[i]) if i in align else states[i] for i in self.genotype.concat]
        layout = tuple((i, part.shape[1]) for i, part in zip(self.genotype.concat, parts))
        return self.output_conv(torch.cat(parts, dim=1), layout)


class Supernet(NASNet):
    """Every child of a NASNet search space at once; ``forward(x, genotype)`` runs that genotype's path only.

    The network is the CIFAR-stem NASNet of the search's proxy child (``N`` cells per stack, ``F`` filters).
    """

    def __init__(self, space: NASNetSpace = NASNetSpace(), *, cells_per_stack: int = 2, num_conv_filters: int = 8,
                 num_classes: int = 10, image_size: int = 32) -> None:
        self.space = space
        template = space.to_genotype([0] * space.num_decisions)  # any genotype of the space: it sizes the cells
        config = nasnet_config(template, cells_per_stack=cells_per_stack, num_conv_filters=num_conv_filters,
                               stem="cifar", num_classes=num_classes, image_size=image_size, aux_head=False,
                               cell_output="fixed")
        super().__init__(template, config, make_cell=partial(SharedCell, ops=space.ops, combiners=space.combiners))
        _untracked_batchnorm(self)

    def select(self, genotype: Genotype) -> None:
        """Make ``genotype`` the path that runs; a genotype outside the space is refused by name."""
        self.space.to_decisions(genotype)  # raises GenotypeError naming what is outside the space
        self.genotype = genotype
        for cell in self.cells.values():
            cell.genotype = genotype.reduction if cell.reduction else genotype.normal

    def forward(self, x: torch.Tensor, genotype: Genotype | None = None) -> torch.Tensor:  # type: ignore[override]
        if genotype is not None:
            self.select(genotype)
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def extract(self, genotype: Genotype) -> NASNet:
        """The stand-alone child (``create_model(genotype, ..., cell_output="fixed")`` with this supernet's N, F
        and stem) holding the path's weights; it computes what ``forward(x, genotype)`` computes (in training
        mode, where both use batch statistics), so a searched cell can start from the shared weights."""
        cfg = self.config
        child = create_model(genotype, cells_per_stack=cfg.cells_per_stack, num_conv_filters=cfg.num_conv_filters,
                             stem="cifar", num_classes=cfg.num_classes, image_size=cfg.image_size, aux_head=False,
                             cell_output="fixed").to(self.classifier.weight.device)
        self.select(genotype)
        _copy(self.stem, child.stem)
        _copy(self.classifier, child.classifier)
        for name, cell in self.cells.items():
            target, path = child.cells[name], cell.genotype
            _copy(cell.pre0, target.pre0)
            _copy(cell.pre1, target.pre1)
            widths = cell.state_widths(path)
            for b, block in enumerate(path.blocks):
                for side, i, op in zip(SIDES, block.inputs, block.ops):
                    _copy(cell.choice(i, widths[i]).candidates[op], target.blocks[b][side])
            aligners = cell.aligners(path)
            for i, module in aligners.items():
                _copy(module, target.align[str(i)])
            layout = tuple((i, widths[-1] if i in aligners else widths[i]) for i in path.concat)
            target.output_conv.conv.weight.copy_(cell.output_conv.weight_for(layout))
            _copy(cell.output_conv.bn, target.output_conv.bn)
        return child


def _copy(source: nn.Module, target: nn.Module) -> None:
    """Copy parameters by name; the shapes must agree, which checks that both are the same layer."""
    params = dict(source.named_parameters())
    names = [n for n, _ in target.named_parameters()]
    if sorted(names) != sorted(params):
        raise RuntimeError(f"{type(source).__name__} and {type(target).__name__} differ: {sorted(params)} vs {names}")
    for name, p in target.named_parameters():
        p.copy_(params[name])


#: What paths train the shared weights: uniform draws (SPOS, RSPS), the search strategy's own proposals (ENAS),
#: or strict fairness (FairNAS): every op of the vocabulary once per step, at each block's decision.
SAMPLINGS = ("uniform", "strategy", "fair")


@dataclass
class SharedConfig:
    """Settings of a shared-weight search (``shared.*``); the network and data sizes are the ``child.*`` keys."""

    warmup_steps: int = 0          # supernet minibatches of uniformly drawn paths before the strategy starts
    train_steps: int = 50          # supernet minibatches per round (a round: controller_updates x ppo.minibatch children)
    controller_updates: int = 5    # strategy minibatches (ppo.minibatch children each) per round
    sampling: str = "strategy"     # which paths train the supernet in a round: uniform | strategy | fair
    eval_images: int = 500         # every child is scored on the same held-out images: the first eval_images
    eval_batch_size: int = 250     # images per scoring batch (batch-statistics BN: the same for every child)
    init_from: str = ""            # start from the supernet of this shared search folder (e.g. a shared warm-up)
    grad_clip: float = 5.0         # gradient-norm clip of the shared weights (ENAS: 5); 0 = none
    device: str = "auto"           # auto = the torchrun process's GPU when there is one, else cpu
    amp: str = "auto"              # the one amp setting (nasnet_zoo.engine): off | auto | fp16 | bf16
    threads: int = 0               # torch intra-op threads of the search process (0 = leave torch's default)

    def validate(self) -> None:
        if min(self.warmup_steps, self.train_steps) < 0 or min(self.controller_updates, self.eval_images,
                                                              self.eval_batch_size) < 1:
            raise ValueError(f"shared.warmup_steps and shared.train_steps must be >= 0, shared.controller_updates, "
                             f"shared.eval_images and shared.eval_batch_size >= 1; got {self.warmup_steps}, "
                             f"{self.train_steps}, {self.controller_updates}, {self.eval_images}, "
                             f"{self.eval_batch_size}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown shared.sampling {self.sampling!r}; expected one of {', '.join(SAMPLINGS)}")
        if self.grad_clip < 0 or self.threads < 0:
            raise ValueError(f"shared.grad_clip and shared.threads must be >= 0, got {self.grad_clip}, {self.threads}")
        self.amp = amp_setting(self.amp, "shared.amp")
        if self.device != "auto":
            device = torch.device(self.device)  # raises on a malformed name
            if device.type not in ("cpu", "cuda"):
                raise ValueError(f"shared.device must be auto, cpu or cuda, got {self.device!r}")
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"shared.device={self.device!r} but torch sees no CUDA GPU; use shared.device cpu")
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("shared.amp fp16 needs CUDA; on CPU use shared.amp bf16 or off")
