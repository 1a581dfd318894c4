"""The NASNet network: a stem, three stacks of Normal cells separated by Reduction cells, and a head.

``build_nasnet`` turns any genotype into a network; NASNet-A Mobile, Large and CIFAR are three configs of it.
The wiring replays TF-slim's ``_build_nasnet_base`` so that end points and weights line up with TF.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cell import Cell
from .genotypes import Genotype
from .layers.drop_path import ScheduledDropPath, set_drop_path_progress
from .layers.ops import BNConfig
from .layers.padding import check_padding_mode

STEMS = ("imagenet", "cifar")


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

    def validate(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; expected one of {STEMS}")
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


@dataclass
class _CellPlan:
    name: str
    reduction: bool
    x: int            # index into the outputs list of this cell's input h_i
    prev: int | None  # index of h_{i-1}, None when there is none
    filters: int
    cell_index: int   # position for ScheduledDropPath's depth ratio
    endpoint: str     # TF end point name


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


class NASNet(nn.Module):
    """A NASNet classifier built from a genotype.

    ``forward`` returns logits; in training mode with the auxiliary head it returns ``(logits, aux_logits)``.
    """

    def __init__(self, genotype: Genotype, config: NASNetConfig = NASNetConfig()) -> None:
        super().__init__()
        config.validate()
        self.genotype, self.config = genotype, config
        self.pretrained_cfg: dict[str, Any] = {}
        bn = BNConfig(config.bn_eps, config.bn_momentum)
        self._plans = self._plan_cells(config)
        total_cells = len(self._plans)

        stem_filters = config.stem_filters
        stem_conv = nn.Conv2d(config.in_chans, stem_filters, 3, stride=2, padding=0, bias=False) \
            if config.stem == "imagenet" else nn.Conv2d(config.in_chans, stem_filters, 3, padding=1, bias=False)
        self.stem = nn.Sequential(OrderedDict(conv=stem_conv, bn=bn(stem_filters)))

        # Channels and stride of every entry of the outputs list (index 0 is "no input", 1 the stem).
        channels: list[int | None] = [None, stem_filters]
        strides: list[int | None] = [None, 2 if config.stem == "imagenet" else 1]
        self.cells = nn.ModuleDict()
        for plan in self._plans:
            genotype_cell = genotype.reduction if plan.reduction else genotype.normal
            prev_ch = channels[plan.prev] if plan.prev is not None else None
            prev_larger = plan.prev is not None and strides[plan.prev] < strides[plan.x]  # type: ignore[operator]
            cell = Cell(genotype_cell, reduction=plan.reduction, in_channels=channels[plan.x],  # type: ignore[arg-type]
                        prev_channels=prev_ch, prev_is_larger=prev_larger, filters=plan.filters,
                        padding=config.padding, bn=bn,
                        drop_path=ScheduledDropPath(config.drop_path_keep_prob, (plan.cell_index + 1) / total_cells))
            self.cells[plan.name] = cell
            channels.append(cell.out_channels)
            strides.append(strides[plan.x] * (2 if plan.reduction else 1))  # type: ignore[operator]
        self._channels, self._strides = channels, strides
        self.num_features = channels[-1]

        self.aux_after = None
        self.aux_head: AuxHead | None = None
        if config.aux_head and config.num_classes > 0 and config.num_reduction_layers >= 2:
            positions = reduction_cell_positions(config.num_cells, config.num_reduction_layers)
            self.aux_after = f"cell_{positions[1] - 1}"
            out_idx = 2 + [p.name for p in self._plans].index(self.aux_after)
            side = -(-config.image_size // strides[out_idx])  # type: ignore[operator]
            self.aux_head = AuxHead(channels[out_idx], config.num_classes, (side - 5) // 3 + 1, bn)  # type: ignore[arg-type]

        self.dropout = nn.Dropout(1.0 - config.dense_dropout_keep_prob)
        self.classifier = nn.Linear(self.num_features, config.num_classes) if config.num_classes > 0 else nn.Identity()

    # ---- wiring -------------------------------------------------------------------------------------------
    @staticmethod
    def _plan_cells(config: NASNetConfig) -> list[_CellPlan]:
        """Replay TF-slim's cell loop to decide each cell's inputs, filters and name."""
        plans: list[_CellPlan] = []
        outputs = [0, 1]  # indices into the outputs list; 0 stands for "none"
        rate = config.filter_scaling_rate
        count = 0

        def add(name: str, reduction: bool, prev: int | None, scaling: float, endpoint: str) -> None:
            nonlocal count
            plans.append(_CellPlan(name, reduction, outputs[-1], prev if prev else None,
                                   int(config.num_conv_filters * scaling), count, endpoint))
            outputs.append(len(outputs))
            count += 1

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

    @property
    def cell_names(self) -> list[str]:
        return [p.name for p in self._plans]

    def cell_info(self) -> list[dict[str, Any]]:
        """Output channels and stride of every cell, in execution order."""
        return [{"name": p.name, "channels": self._channels[2 + i], "stride": self._strides[2 + i],
                 "reduction": p.reduction} for i, p in enumerate(self._plans)]

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

    # ---- forward -------------------------------------------------------------------------------------------
    def _run_cells(self, x: torch.Tensor, until: str | None = None,
                   collect: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor | None]:
        outputs: list[torch.Tensor | None] = [None, self.stem(x)]
        if collect is not None:
            collect["conv0_bn"] = outputs[1]  # type: ignore[assignment]
        for plan in self._plans:
            cell = self.cells[plan.name]
            outputs.append(cell(outputs[plan.x], outputs[plan.prev] if plan.prev is not None else None))
            if collect is not None:
                collect[plan.endpoint] = outputs[-1]  # type: ignore[assignment]
            if plan.name == until:
                break
            if self.aux_head is not None and self.training and plan.name == self.aux_after:
                self._aux_logits = self.aux_head(outputs[-1])
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self._run_cells(x)[-1]  # type: ignore[return-value]

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.relu(features).mean((2, 3))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._aux_logits = None
        logits = self.forward_head(self.forward_features(x))
        if self._aux_logits is not None:
            aux, self._aux_logits = self._aux_logits, None
            return logits, aux
        return logits

    def end_points(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every TF-slim end point (``conv0_bn``, ``cell_stem_0``, ``Stem``, ``Cell_k``, ``Reduction_Cell_k``,
        ``global_pool``, ``Logits``), for cell-by-cell comparison with TensorFlow."""
        self.check_input(x)
        points: dict[str, torch.Tensor] = {}
        features = self._run_cells(x, collect=points)[-1]
        points["global_pool"] = self.forward_head(features, pre_logits=True)  # type: ignore[arg-type]
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

    # ---- features for detection ----------------------------------------------------------------------------
    def feature_levels(self) -> list[dict[str, Any]]:
        """The last output at each stride: (channels, reduction, module) for backbones."""
        levels = {self._strides[1]: {"num_chs": self._channels[1], "reduction": self._strides[1], "module": "stem"}}
        for info in self.cell_info():
            levels[info["stride"]] = {"num_chs": info["channels"], "reduction": info["stride"],
                                      "module": f"cells.{info['name']}"}
        return [levels[s] for s in sorted(levels)]

    def config_dict(self) -> dict[str, Any]:
        return {"genotype": self.genotype.to_dict(), **asdict(self.config)}


def build_nasnet(genotype: Genotype, *, cells_per_stack: int, penultimate_filters: int | None = None,
                 num_conv_filters: int | None = None, stem: str = "imagenet", num_classes: int = 1000,
                 **overrides: Any) -> NASNet:
    """Build a NASNet from any genotype, in the paper's "N @ F" notation.

    ``penultimate_filters`` (F) is the channel count of the last cell; it fixes the base filter count as
    F / (4 * number of concatenated states) for two reductions. Give ``num_conv_filters`` instead to set the
    base directly. Other keyword arguments are ``NASNetConfig`` fields.
    """
    if (penultimate_filters is None) == (num_conv_filters is None):
        raise ValueError("give exactly one of penultimate_filters (paper's 'N @ F') or num_conv_filters")
    defaults = _STEM_DEFAULTS[stem] if stem in _STEM_DEFAULTS else {}
    settings = {**defaults, **overrides}
    if penultimate_filters is not None:
        num_conv_filters = filters_for_penultimate(genotype, penultimate_filters,
                                                   settings.get("num_reduction_layers", 2),
                                                   settings.get("filter_scaling_rate", 2.0))
    unknown = set(settings) - set(NASNetConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown NASNet settings {sorted(unknown)}; valid: {sorted(NASNetConfig.__dataclass_fields__)}")
    config = NASNetConfig(cells_per_stack=cells_per_stack, num_conv_filters=int(num_conv_filters),  # type: ignore[arg-type]
                          stem=stem, num_classes=num_classes, **settings)
    return NASNet(genotype, config)


def filters_for_penultimate(genotype: Genotype, penultimate_filters: int, num_reduction_layers: int = 2,
                            filter_scaling_rate: float = 2.0) -> int:
    """Base filter count F0 such that the last normal cell outputs ``penultimate_filters`` channels."""
    width = sum(2 if i >= 2 and genotype.normal.blocks[i - 2].combiner == "concat" else 1
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
