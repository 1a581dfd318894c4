"""The NASNet network: a stem, three stacks of Normal cells separated by Reduction cells, and a head.

``build_nasnet`` turns any genotype into a network; NASNet-A Mobile, Large and CIFAR are three configs of it.
The wiring replays TF-slim's ``_build_nasnet_base`` so that end points and weights line up with TF.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .cell import Cell
from .genotypes import Genotype
from .layers.drop_path import ScheduledDropPath, set_drop_path_progress
from .layers.ops import BNConfig
from .layers.padding import check_padding_mode

STEMS = ("imagenet", "cifar")
#: How a cell makes its output: TF-slim's concatenation of the unused states, or that concatenation through a
#: 1x1 conv to the cell's F channels (ENAS), whose width does not depend on the genotype.
CELL_OUTPUTS = ("concat", "fixed")


@dataclass(frozen=True)
class NASNetConfig:
    """Everything that defines a NASNet network besides its genotype (TF-slim hparams, by their names)."""

    cells_per_stack: int = 4
    num_conv_filters: int = 44
    stem: str = "imagenet"
    stem_multiplier: float = 1.0
    num_classes: int = 1000
    in_chans: int = 3
    skip_reduction_layer_input: bool = False
    aux_head: bool = True
    drop_path_keep_prob: float = 1.0
    dense_dropout_keep_prob: float = 0.5
    bn_eps: float = 1e-3
    bn_momentum: float = 0.0003
    filter_scaling_rate: float = 2.0
    num_reduction_layers: int = 2
    image_size: int = 224
    padding: str = "tf"
    cell_output: str = "concat"  # "fixed": every cell ends with a 1x1 conv to F channels (ENAS; weight sharing)

    def validate(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; expected one of {STEMS}")
        if self.cell_output not in CELL_OUTPUTS:
            raise ValueError(f"unknown cell_output {self.cell_output!r}; expected one of {CELL_OUTPUTS}")
        check_padding_mode(self.padding)
        for name in ("cells_per_stack", "num_conv_filters", "in_chans", "image_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 removes the classifier), got {self.num_classes}")
        if not 0.0 < self.dense_dropout_keep_prob <= 1.0:
            raise ValueError(f"dense_dropout_keep_prob must be in (0, 1], got {self.dense_dropout_keep_prob}")

    @property
    def num_cells(self) -> int:
        return self.cells_per_stack * (self.num_reduction_layers + 1)

    @property
    def stem_filters(self) -> int:
        """Output channels of the stem conv: TF-slim's ``32 * stem_multiplier`` for the ImageNet stem, the cell
        width times the multiplier for the CIFAR stem."""
        if self.stem == "imagenet":
            return int(round(32 * self.stem_multiplier))
        return int(self.num_conv_filters * self.stem_multiplier)

    @property
    def min_input_size(self) -> int:
        """Smallest image side the network accepts: every reduction must still see at least one pixel."""
        if self.stem == "imagenet":
            return 2 ** (self.num_reduction_layers + 3)
        return 2 ** self.num_reduction_layers


def reduction_cell_positions(num_cells: int, num_reduction_layers: int) -> list[int]:
    """Normal-cell indices that a reduction cell precedes: after 1/3 and 2/3 of the cells (TF-slim rule)."""
    return [int(k / (num_reduction_layers + 1) * num_cells) for k in range(1, num_reduction_layers + 1)]


@dataclass(frozen=True)
class _CellPlan:
    name: str
    reduction: bool
    x: int            # trunk output this cell reads as h_i
    prev: int | None  # trunk output it reads as h_{i-1}; None when there is none
    filters: int
    endpoint: str     # TF end point name


@dataclass(frozen=True)
class _Wiring:
    """The whole network's wiring as data: ``plans[k - 1]`` makes trunk output k (output 0 is the stem)."""

    plans: tuple[_CellPlan, ...]
    channels: tuple[int, ...]  # per trunk output
    strides: tuple[int, ...]

    def seeds(self, start: int, stop: int) -> tuple[int, ...]:
        """Outputs before ``start`` that the cells making outputs ``start .. stop - 1`` read."""
        reads = {i for plan in self.plans[max(start, 1) - 1:stop - 1] for i in (plan.x, plan.prev) if i is not None}
        return tuple(sorted(i for i in reads if i < start))


def _plan_cells(config: NASNetConfig) -> list[_CellPlan]:
    """Replay TF-slim's cell loop to decide each cell's inputs, filters and name."""
    plans: list[_CellPlan] = []
    outputs: list[int | None] = [None, 0]  # trunk outputs in TF's cell_outputs order; None: "no input"
    rate = config.filter_scaling_rate

    def add(name: str, reduction: bool, prev: int | None, scaling: float, endpoint: str) -> None:
        filters = int(config.num_conv_filters * scaling)
        plans.append(_CellPlan(name, reduction, outputs[-1], prev, filters, endpoint))  # type: ignore[arg-type]
        outputs.append(len(plans))

    if config.stem == "imagenet":
        scaling = 1.0 / rate ** 2
        for i in range(2):
            add(f"cell_stem_{i}", True, outputs[-2], scaling, "Stem" if i == 1 else f"cell_stem_{i}")
            scaling *= rate
    positions = reduction_cell_positions(config.num_cells, config.num_reduction_layers)
    scaling = 1.0
    for cell_num in range(config.num_cells):
        prev = outputs[-2] if config.skip_reduction_layer_input else None
        if cell_num in positions:
            scaling *= rate
            r = positions.index(cell_num)
            add(f"reduction_cell_{r}", True, outputs[-2], scaling, f"Reduction_Cell_{r}")
        if not config.skip_reduction_layer_input:
            prev = outputs[-2]
        add(f"cell_{cell_num}", False, prev, scaling, f"Cell_{cell_num}")
    return plans


class AuxHead(nn.Module):
    """Auxiliary classifier before the second reduction (loss weight 0.4 in training)."""

    def __init__(self, in_channels: int, num_classes: int, spatial: int, bn: BNConfig) -> None:
        super().__init__()
        self.spatial = max(spatial, 1)
        self.proj = nn.Conv2d(in_channels, 128, 1, bias=False)
        self.bn0 = bn(128)
        self.conv = nn.Conv2d(128, 768, self.spatial, bias=False)
        self.bn1 = bn(768)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = F.avg_pool2d(x, 5, 3) if min(x.shape[-2:]) >= 5 else x
        x = F.relu(self.bn0(self.proj(x)))
        if tuple(x.shape[-2:]) != (self.spatial, self.spatial):
            x = F.adaptive_avg_pool2d(x, self.spatial)
        x = F.relu(self.bn1(self.conv(x)))
        return self.fc(torch.flatten(x, 1))


Inputs = Union[torch.Tensor, Sequence[torch.Tensor]]


class NASNetTrunk(nn.Module):
    """The stem and cells of a NASNet, or a contiguous range of them, and the one loop that runs them.

    Trunk outputs are numbered in execution order: 0 is the stem, k the k-th cell (``output_info``). A trunk
    holds the modules of outputs ``start .. stop - 1`` and nothing else. One that starts at the stem takes an
    image; one that starts later takes the earlier outputs its cells read (``seeds``), in index order.
    ``NASNet`` is the whole trunk plus a classifier; ``cell_range`` cuts ranges from any trunk, sharing modules.
    """

    stem: nn.Module | None
    cells: nn.ModuleDict
    genotype: Genotype
    config: NASNetConfig
    pretrained_cfg: dict[str, Any]
    start: int
    stop: int
    _wiring: _Wiring

    # ---- description --------------------------------------------------------------------------------------
    @property
    def seeds(self) -> tuple[int, ...]:
        """Trunk outputs before ``start`` that this trunk reads (empty when it starts at the stem)."""
        return self._wiring.seeds(self.start, self.stop)

    def output_info(self, *, whole_network: bool = False) -> list[dict[str, Any]]:
        """Index, name (``stem`` or the cell's), TF end point, channels, stride and kind of each output here
        (``whole_network``: of every output of the network this trunk was cut from)."""
        wiring = self._wiring
        info = []
        for index in range(0, len(wiring.channels)) if whole_network else range(self.start, self.stop):
            plan = wiring.plans[index - 1] if index else None
            info.append({"index": index, "name": plan.name if plan else "stem",
                         "endpoint": plan.endpoint if plan else "conv0_bn", "channels": wiring.channels[index],
                         "stride": wiring.strides[index], "reduction": plan.reduction if plan else False})
        return info

    @property
    def seed_channels(self) -> tuple[int, ...]:
        """Channels of the ``seeds``, in their order."""
        return tuple(self._wiring.channels[i] for i in self.seeds)

    @property
    def cell_names(self) -> list[str]:
        return list(self.cells)

    def feature_levels(self) -> list[dict[str, Any]]:
        """The last output at each stride: channels, reduction (stride), module and output index, for backbones."""
        levels = {}
        for info in self.output_info():
            module = "stem" if info["index"] == 0 else f"cells.{info['name']}"
            levels[info["stride"]] = {"num_chs": info["channels"], "reduction": info["stride"], "module": module,
                                      "index": info["index"]}
        return [levels[s] for s in sorted(levels)]

    def output_index(self, key: int | str) -> int:
        """The trunk output number of an output name (``"stem"``, ``"cell_3"``) or number (negative: from ``stop``)."""
        if isinstance(key, str):
            names = ["stem"] + [plan.name for plan in self._wiring.plans]
            index = names.index(key) if key in names else -1
        else:
            index = key + self.stop if key < 0 else key
        if not self.start <= index < self.stop:
            names = [info["name"] for info in self.output_info()]
            raise ValueError(f"trunk output {key!r} is not computed here; this trunk makes outputs {self.start}.."
                             f"{self.stop - 1}: {', '.join(names)}")
        return index

    # ---- input checks --------------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError that names the expected input and the likely fix (skipped while tracing)."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        c, side = self.config.in_chans, self.config.min_input_size
        expected = f"a float tensor [N, {c}, H, W] with H, W >= {side}"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected {expected}, got {type(x).__name__}; convert images with "
                             "torchvision.transforms.functional.to_tensor or torch.as_tensor")
        if x.dim() != 4:
            hint = "; add the batch dimension with x.unsqueeze(0)" if x.dim() == 3 else ""
            raise ValueError(f"expected {expected}, got a tensor of rank {x.dim()} with shape {tuple(x.shape)}{hint}")
        if not x.is_floating_point():
            raise ValueError(f"expected {expected}, got dtype {x.dtype}; convert images to float "
                             "(and normalise with the model's mean/std)")
        if x.shape[1] != c:
            if x.shape[-1] == c:
                hint = f"; this looks like channels-last [N, H, W, {c}] data: use x.permute(0, 3, 1, 2)"
            elif x.shape[1] == 1 and c == 3:
                hint = "; for grayscale images repeat the channel: x.expand(-1, 3, -1, -1)"
            else:
                hint = f"; build the model with in_chans={x.shape[1]} for other inputs"
            raise ValueError(f"expected {expected}, got {x.shape[1]} channels (shape {tuple(x.shape)}){hint}")
        if min(x.shape[-2:]) < side:
            raise ValueError(f"expected {expected}, got an image of {x.shape[-2]}x{x.shape[-1]}: too small, every "
                             f"reduction must keep at least one pixel; resize to at least {side}x{side}")

    # ---- running -------------------------------------------------------------------------------------------
    def _run(self, inputs: Inputs | dict[int, torch.Tensor], stop: int) -> dict[int, torch.Tensor]:
        """The trunk loop: every output up to ``stop`` (exclusive), by index.

        ``inputs``: the image or the seeds (see the class), or the outputs of an earlier call to go on from.
        """
        if isinstance(inputs, dict):
            outputs = inputs
        elif self.start == 0:
            self.check_input(inputs)  # type: ignore[arg-type]
            outputs = {0: self.stem(inputs)}  # type: ignore[misc]
        else:
            seeds = self.seeds
            if isinstance(inputs, torch.Tensor) or len(inputs) != len(seeds):
                raise ValueError(f"this trunk starts at output {self.start} and reads outputs {list(seeds)}: pass "
                                 f"{len(seeds)} tensors in that order")
            outputs = dict(zip(seeds, inputs))
        for index in range(max(outputs) + 1, stop):
            plan = self._wiring.plans[index - 1]
            outputs[index] = self.cells[plan.name](outputs[plan.x], None if plan.prev is None else outputs[plan.prev])
        return outputs

    def forward_intermediates(self, x: Inputs, indices: int | Sequence[int | str] | None = None, *,
                              stop_early: bool = False, intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Trunk outputs at ``indices`` (timm's ``forward_intermediates``).

        ``indices``: output numbers or names (see the class), an int n for the last n outputs, or None for all.
        Returns ``(last output computed, intermediates)``, or only the intermediates with ``intermediates_only``;
        with either that or ``stop_early`` the cells after the deepest requested output are not run.
        """
        if indices is None:
            indices = range(self.start, self.stop)
        elif isinstance(indices, int):
            indices = range(max(self.stop - indices, self.start), self.stop)
        take = [self.output_index(i) for i in indices]
        stop = max(take, default=self.start) + 1 if stop_early or intermediates_only else self.stop
        outputs = self._run(x, stop)
        intermediates = [outputs[i] for i in take]
        return intermediates if intermediates_only else (outputs[stop - 1], intermediates)

    def forward_features(self, x: Inputs) -> torch.Tensor:
        """The last output of this trunk."""
        return self._run(x, self.stop)[self.stop - 1]

    def cell_range(self, start: int = 0, stop: int | None = None) -> "CellRange":
        """Outputs ``start .. stop - 1`` of this trunk as a module that shares their modules and holds nothing
        else (``output_index`` turns names into numbers)."""
        return CellRange(self, start, stop)


class CellRange(NASNetTrunk):
    """Outputs ``start .. stop - 1`` of a trunk, sharing its modules: backbones and heads are built on this."""

    def __init__(self, source: NASNetTrunk, start: int = 0, stop: int | None = None) -> None:
        super().__init__()
        stop = source.stop if stop is None else stop
        if not source.start <= start < stop <= source.stop:
            raise ValueError(f"outputs {start}..{stop - 1} are not all in the trunk given (outputs "
                             f"{source.start}..{source.stop - 1})")
        self.genotype, self.config, self.pretrained_cfg = source.genotype, source.config, source.pretrained_cfg
        self._wiring, self.start, self.stop = source._wiring, start, stop
        self.stem = source.stem if start == 0 else None
        self.cells = nn.ModuleDict((plan.name, source.cells[plan.name])
                                   for plan in self._wiring.plans[max(start, 1) - 1:stop - 1])

    def forward(self, x: Inputs) -> torch.Tensor:
        return self.forward_features(x)


class NASNet(NASNetTrunk):
    """A NASNet classifier built from a genotype: the whole trunk and a head.

    ``forward`` returns logits; in training mode with the auxiliary head it returns ``(logits, aux_logits)``.
    ``make_cell`` builds every cell from the ``Cell`` arguments; the search's supernet passes its shared cell.
    """

    def __init__(self, genotype: Genotype, config: NASNetConfig = NASNetConfig(), *,
                 make_cell: Callable[..., Cell] = Cell) -> None:
        super().__init__()
        config.validate()
        self.genotype, self.config = genotype, config
        self.pretrained_cfg: dict[str, Any] = {}
        bn = BNConfig(config.bn_eps, config.bn_momentum)
        plans = _plan_cells(config)

        stem_filters = config.stem_filters
        stem_conv = nn.Conv2d(config.in_chans, stem_filters, 3, stride=2, padding=0, bias=False) \
            if config.stem == "imagenet" else nn.Conv2d(config.in_chans, stem_filters, 3, padding=1, bias=False)
        self.stem = nn.Sequential(OrderedDict(conv=stem_conv, bn=bn(stem_filters)))

        # Channels and stride of every trunk output (0 is the stem).
        channels, strides = [stem_filters], [2 if config.stem == "imagenet" else 1]
        self.cells = nn.ModuleDict()
        for position, plan in enumerate(plans):
            genotype_cell = genotype.reduction if plan.reduction else genotype.normal
            prev_ch = channels[plan.prev] if plan.prev is not None else None
            prev_larger = plan.prev is not None and strides[plan.prev] < strides[plan.x]
            cell = make_cell(genotype_cell, reduction=plan.reduction, in_channels=channels[plan.x],
                             prev_channels=prev_ch, prev_is_larger=prev_larger, filters=plan.filters,
                             padding=config.padding, bn=bn, fixed_output=config.cell_output == "fixed",
                             drop_path=ScheduledDropPath(config.drop_path_keep_prob, (position + 1) / len(plans)))
            self.cells[plan.name] = cell
            channels.append(cell.out_channels)
            strides.append(strides[plan.x] * (2 if plan.reduction else 1))
        self._wiring = _Wiring(tuple(plans), tuple(channels), tuple(strides))
        self.start, self.stop = 0, len(channels)
        self.num_features = channels[-1]

        self.aux_after = None
        self.aux_head: AuxHead | None = None
        if config.aux_head and config.num_classes > 0 and config.num_reduction_layers >= 2:
            positions = reduction_cell_positions(config.num_cells, config.num_reduction_layers)
            self.aux_after = f"cell_{positions[1] - 1}"
            self._aux_index = self.output_index(self.aux_after)
            side = -(-config.image_size // strides[self._aux_index])
            self.aux_head = AuxHead(channels[self._aux_index], config.num_classes, (side - 5) // 3 + 1, bn)

        self.dropout = nn.Dropout(1.0 - config.dense_dropout_keep_prob)
        self.classifier = nn.Linear(self.num_features, config.num_classes) if config.num_classes > 0 else nn.Identity()

    # ---- forward -------------------------------------------------------------------------------------------
    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.relu(features).mean((2, 3))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.aux_head is None or not self.training:
            return self.forward_head(self.forward_features(x))
        outputs = self._run(x, self._aux_index + 1)
        aux = self.aux_head(outputs[self._aux_index])
        return self.forward_head(self._run(outputs, self.stop)[self.stop - 1]), aux

    def end_points(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every TF-slim end point (``conv0_bn``, ``cell_stem_0``, ``Stem``, ``Cell_k``, ``Reduction_Cell_k``,
        ``global_pool``, ``Logits``), for cell-by-cell comparison with TensorFlow."""
        outputs = self.forward_intermediates(x, intermediates_only=True)
        points = {info["endpoint"]: y for info, y in zip(self.output_info(), outputs)}
        points["global_pool"] = self.forward_head(outputs[-1], pre_logits=True)
        if self.config.num_classes > 0:
            points["Logits"] = self.classifier(points["global_pool"])
        return points

    # ---- training helpers ----------------------------------------------------------------------------------
    def set_drop_path_progress(self, progress: float) -> None:
        """Tell ScheduledDropPath how far training is (step / total steps)."""
        set_drop_path_progress(self, progress)

    def reset_classifier(self, num_classes: int) -> None:
        self.config = replace(self.config, num_classes=num_classes)
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def config_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_dict(), **asdict(self.config)}


#: NASNetConfig fields that decide which weights exist and their shapes (drop path, dropout, ... may differ).
NASNET_STRUCTURE_FIELDS = ("genotype", "cells_per_stack", "num_conv_filters", "stem", "stem_multiplier",
                           "num_classes", "in_chans", "skip_reduction_layer_input", "filter_scaling_rate",
                           "num_reduction_layers")


def nasnet_identity(model: nn.Module) -> dict[str, Any]:
    """The structure a NASNet's saved weights carry, to refuse them for another architecture by name."""
    config = model.config_dict()  # type: ignore[operator]
    identity = {k: config[k] for k in NASNET_STRUCTURE_FIELDS}
    if config.get("cell_output", "concat") != "concat":  # only when set, so that older weights still match
        identity["cell_output"] = config["cell_output"]
    return identity


def build_nasnet(genotype: Genotype, *, cells_per_stack: int, penultimate_filters: int | None = None,
                 num_conv_filters: int | None = None, stem: str = "imagenet", num_classes: int = 1000,
                 **overrides: Any) -> NASNet:
    """Build a NASNet from any genotype, in the paper's "N @ F" notation.

    ``penultimate_filters`` (F) is the channel count of the last cell; it fixes the base filter count as
    F / (4 * number of concatenated states) for two reductions. Give ``num_conv_filters`` instead to set the
    base directly. Other keyword arguments are ``NASNetConfig`` fields, e.g. ``cell_output="fixed"`` for the cell
    output of the search's supernet (a 1x1 conv to F channels ends every cell).
    """
    return NASNet(genotype, nasnet_config(genotype, cells_per_stack=cells_per_stack,
                                          penultimate_filters=penultimate_filters, num_conv_filters=num_conv_filters,
                                          stem=stem, num_classes=num_classes, **overrides))


def nasnet_config(genotype: Genotype, *, cells_per_stack: int, penultimate_filters: int | None = None,
                  num_conv_filters: int | None = None, stem: str = "imagenet", num_classes: int = 1000,
                  **overrides: Any) -> NASNetConfig:
    """The ``NASNetConfig`` that :func:`build_nasnet` builds with: the stem's defaults, then ``overrides``."""
    if (penultimate_filters is None) == (num_conv_filters is None):
        raise ValueError("give exactly one of penultimate_filters (paper's 'N @ F') or num_conv_filters")
    defaults = _STEM_DEFAULTS[stem] if stem in _STEM_DEFAULTS else {}
    settings = {**defaults, **overrides}
    if penultimate_filters is not None:
        num_conv_filters = filters_for_penultimate(genotype, penultimate_filters,
                                                   settings.get("num_reduction_layers", 2),
                                                   settings.get("filter_scaling_rate", 2.0),
                                                   fixed_output=settings.get("cell_output") == "fixed")
    unknown = set(settings) - set(NASNetConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; valid: {sorted(NASNetConfig.__dataclass_fields__)}")
    config = NASNetConfig(cells_per_stack=cells_per_stack, num_conv_filters=int(num_conv_filters),  # type: ignore[arg-type]
                          stem=stem, num_classes=num_classes, **settings)
    config.validate()
    return config


def filters_for_penultimate(genotype: Genotype, penultimate_filters: int, num_reduction_layers: int = 2,
                            filter_scaling_rate: float = 2.0, *, fixed_output: bool = False) -> int:
    """Base filter count F0 such that the last normal cell outputs ``penultimate_filters`` channels
    (``fixed_output``: every cell outputs its own F, whatever it concatenates)."""
    width = 1 if fixed_output else sum(2 if i >= 2 and genotype.normal.blocks[i - 2].combiner == "concat" else 1
                                       for i in genotype.normal.concat)
    scale = filter_scaling_rate ** num_reduction_layers
    base = penultimate_filters / (scale * width)
    if base != int(base) or base < 1:
        raise ValueError(f"penultimate_filters={penultimate_filters} is not a multiple of {int(scale * width)} "
                         f"({int(scale)} x {width} concatenated states of F channels) for this genotype")
    return int(base)


# Defaults that follow the stem choice (TF-slim cifar_config vs the ImageNet configs).
_STEM_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar": dict(stem_multiplier=3.0, bn_eps=1e-5, bn_momentum=0.1, dense_dropout_keep_prob=1.0,
                  image_size=32, drop_path_keep_prob=1.0),
    "imagenet": dict(),
}
