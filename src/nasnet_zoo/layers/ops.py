"""The building blocks of NASNet cells: the 13 search-space ops and the input adapters.

Every op maps a state with any channel count to ``filters`` channels, so blocks can always be combined;
the layer structure and names follow TF-slim so its checkpoints map one to one.

Every op also owns its inference form (``CellOp.fuse``, timm's ``reparameterize`` pattern): BN folded into
the conv before it, convs packed for oneDNN. ``FusedCell`` only schedules what the ops return, so a new op
is one class here (plus its entry in ``build_op``); ``tests/test_inference_ops.py`` checks the fused form
of every op against the op.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fused import FusedFactorizedReduce, SepConvGroup, fuse_conv_bn, fused_pool, fused_sep_conv_stack
from .packed_conv import PackedConv2d
from .padding import Conv2dSame, Pool2dSame, check_padding_mode


@dataclass(frozen=True)
class BNConfig:
    """BatchNorm settings: TF-slim's ImageNet models use eps 1e-3 and decay 0.9997 (momentum 3e-4)."""

    eps: float = 1e-3
    momentum: float = 0.0003

    def __call__(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum)


class FusedForm(NamedTuple):
    """An op's inference form: ``body(relu(x) if reads_relu else x)`` equals ``op(x)`` in eval mode.

    The ReLU is left to the caller, so a cell computes each state's ReLU once for all ops that read it.
    """

    reads_relu: bool
    body: nn.Module


class CellOp(nn.Module):
    """Base of the cell ops and input adapters: the eager op, and how it runs in inference mode."""

    def fuse(self) -> FusedForm:
        """The inference form. It takes over this op's tensors and folds BN into them in place: call it on
        a copy you no longer need (``optimize_for_inference`` does)."""
        raise NotImplementedError(f"{type(self).__name__} has no inference form: define its fuse() method")

    def group_key(self) -> tuple | None:
        """Ops of one cell stage with equal keys run together as ``type(op).fuse_group(ops)``; None: alone."""
        return None

    @staticmethod
    def fuse_group(ops: Sequence["CellOp"]) -> nn.Module:
        """The inference form of ops with one ``group_key``, called as ``group(inputs, relu)`` with one pre-ReLU
        input per op and a function that computes (or recalls) an input's ReLU; returns one output per op."""
        raise NotImplementedError("only ops with a group_key() run in groups")

    def result_key(self) -> tuple | None:
        """Weightless ops with equal keys compute the same result from the same input (it runs once)."""
        return None


class Identity(CellOp):
    """Passes its input through (a cell input that needs no adapter)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fuse(self) -> FusedForm:
        return FusedForm(False, nn.Identity())


class ConvBN(CellOp):
    """[ReLU ->] conv -> BN, the NASNet unit (the ReLU is a flag so converted weights keep TF's order)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 1,
                 stride: int | tuple[int, int] = 1, *, relu_first: bool = True, dilation: int = 1,
                 bn: BNConfig = BNConfig()) -> None:
        super().__init__()
        self.relu_first = relu_first
        self.conv = Conv2dSame(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.bn = bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_first:
            x = F.relu(x)
        return self.bn(self.conv(x))

    def fuse(self) -> FusedForm:
        return FusedForm(self.relu_first, fuse_conv_bn(self.conv, self.bn))


class SepConv(nn.Module):
    """ReLU -> depthwise -> pointwise -> BN (no BN or ReLU between depthwise and pointwise, as in TF)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 bn: BNConfig = BNConfig()) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(F.relu(x))))


class SepConvStack(CellOp):
    """A chosen separable conv is applied twice, the stride on the first (paper, appendix)."""

    def __init__(self, in_channels: int, filters: int, kernel_size: int, stride: int, *, bn: BNConfig) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SepConv(in_channels, filters, kernel_size, stride, bn=bn),
            SepConv(filters, filters, kernel_size, 1, bn=bn),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def fuse(self) -> FusedForm:
        return FusedForm(True, fused_sep_conv_stack(self))

    def group_key(self) -> tuple:
        # Strided groups read the larger maps, where zero-embedding a smaller kernel in a larger one costs more
        # than the calls it saves: merge kernel sizes at stride 1 only.
        first = self.layers[0].depthwise
        return first.stride[0], first.in_channels, first.kernel_size[0] if first.stride[0] > 1 else 0

    @staticmethod
    def fuse_group(stacks: Sequence["SepConvStack"]) -> SepConvGroup:
        """Stacks of one stage reading same-shaped inputs, as grouped convolutions (they read ReLU'd inputs)."""
        return SepConvGroup(list(stacks))


class ConvOp(CellOp):
    """ReLU -> conv(s) -> BN for the plain convolutions of the search space (not used by NASNet-A)."""

    def __init__(self, in_channels: int, filters: int, kernels: list[tuple[int, int]], stride: int, *,
                 dilation: int = 1, bn: BNConfig) -> None:
        super().__init__()
        convs, channels = [], in_channels
        for i, kernel in enumerate(kernels):
            # Put the stride on the first conv of a factorised pair (1xk then kx1).
            step = stride if i == 0 else 1
            convs.append(Conv2dSame(channels, filters, kernel, stride=step, dilation=dilation))
            channels = filters
        self.convs = nn.Sequential(*convs)
        self.bn = bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.convs(F.relu(x)))

    def fuse(self) -> FusedForm:
        *first, last = self.convs
        packed = [PackedConv2d.from_conv(conv) for conv in first]
        return FusedForm(True, nn.Sequential(*packed, fuse_conv_bn(last, self.bn)))


class PoolOp(CellOp):
    """SAME pooling, then a 1x1 conv + BN (no ReLU, as in TF) when the channel count must change."""

    def __init__(self, kind: str, kernel_size: int, in_channels: int, filters: int, stride: int, *,
                 padding: str, bn: BNConfig) -> None:
        super().__init__()
        self.pool = Pool2dSame(kind, kernel_size, stride, padding)
        self.proj = ConvBN(in_channels, filters, 1, relu_first=False, bn=bn) if in_channels != filters else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return x if self.proj is None else self.proj(x)

    def fuse(self) -> FusedForm:
        pool = fused_pool(self.pool)
        if self.proj is None:
            return FusedForm(False, pool)
        return FusedForm(False, nn.Sequential(pool, self.proj.fuse().body))

    def result_key(self) -> tuple | None:
        # NASNet-A's two 3x3 max pools of h_i in the Reduction cell and its two 3x3 average pools of h_{i-1} in
        # the Normal cell are one computation each.
        pool = self.pool
        return None if self.proj is not None else ("pool", pool.kind, pool.kernel_size, pool.stride, pool.mode)


class IdentityOp(CellOp):
    """Identity, or ReLU -> strided 1x1 conv -> BN when stride or channels demand it (TF's 'none' op)."""

    def __init__(self, in_channels: int, filters: int, stride: int, *, bn: BNConfig) -> None:
        super().__init__()
        needs_proj = stride > 1 or in_channels != filters
        self.proj = ConvBN(in_channels, filters, 1, stride, relu_first=True, bn=bn) if needs_proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)

    def fuse(self) -> FusedForm:
        return FusedForm(False, nn.Identity()) if self.proj is None else self.proj.fuse()


class FactorizedReduce(CellOp):
    """Halve resolution without losing pixels: two stride-2 1x1 paths, the second shifted by one, then BN."""

    def __init__(self, in_channels: int, out_channels: int, *, relu_first: bool, bn: BNConfig) -> None:
        super().__init__()
        self.relu_first = relu_first
        half = out_channels // 2
        self.path1 = nn.Conv2d(in_channels, half, 1, stride=2, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels - half, 1, stride=2, bias=False)
        self.bn = bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_first:
            x = F.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.path1(x), self.path2(shifted)], dim=1))

    def fuse(self) -> FusedForm:
        return FusedForm(self.relu_first, FusedFactorizedReduce(self.path1, self.path2, self.bn))


def build_op(name: str, in_channels: int, filters: int, stride: int, *, padding: str = "tf",
             bn: BNConfig = BNConfig()) -> CellOp:
    """Instantiate one search-space op (names from ``nasnet_zoo.genotypes.OPS``)."""
    check_padding_mode(padding)
    if name == "identity":
        return IdentityOp(in_channels, filters, stride, bn=bn)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConvStack(in_channels, filters, k, stride, bn=bn)
    if name.startswith(("avg_pool_", "max_pool_")):
        return PoolOp(name[:3], int(name[-1]), in_channels, filters, stride, padding=padding, bn=bn)
    conv_kernels = {
        "conv_1x1": [(1, 1)],
        "conv_3x3": [(3, 3)],
        "conv_1x3_3x1": [(1, 3), (3, 1)],
        "conv_1x7_7x1": [(1, 7), (7, 1)],
        "dil_conv_3x3": [(3, 3)],
    }
    if name in conv_kernels:
        return ConvOp(in_channels, filters, conv_kernels[name], stride, dilation=2 if name == "dil_conv_3x3" else 1,
                      bn=bn)
    raise ValueError(f"unknown op {name!r}")


class ChoiceOp(nn.Module):
    """Every candidate op for one input width and stride; ``forward(x, op)`` runs the one named.

    A weight-sharing supernet holds these instead of one op per block: a cell's blocks that apply the same op
    to inputs of the same width and stride share its weights, and only the candidate that runs gets gradients.
    """

    def __init__(self, ops: Sequence[str], in_channels: int, filters: int, stride: int, *, padding: str = "tf",
                 bn: BNConfig = BNConfig()) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict({op: build_op(op, in_channels, filters, stride, padding=padding, bn=bn)
                                         for op in ops})

    def forward(self, x: torch.Tensor, op: str) -> torch.Tensor:
        return self.candidates[op](x)
