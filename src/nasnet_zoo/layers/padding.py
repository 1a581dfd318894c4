"""TensorFlow "SAME" padding, reproduced exactly, and decided here for every conv and pool path.

TF pads ``total = max((ceil(n/s) - 1) * s + k - n, 0)`` cells, ``total // 2`` before and the rest after, so
stride-2 ops on even inputs pad one more cell at the bottom/right. Average pooling divides by the real cells
only; max pooling never picks padding. Where the padding happens to be symmetric we call PyTorch's native
kernels with a static padding, which is exact and fastest; only the asymmetric case pays for an explicit pad.
``static_same_padding`` (fixed at build time) and ``same_padding_for`` (per input) make that choice for the
training layers here and for the inference kernels (``nasnet_zoo.layers.fused``), so both pad alike.

``mode="timm"`` reproduces timm's dynamic same padding, whose stride-2 average pools pad zeros first and
count them in the divisor. It exists to prove weight equivalence with timm, not for new work.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PADDING_MODES = ("tf", "timm")

Pads = tuple[int, int, int, int]


def check_padding_mode(mode: str) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; expected one of {PADDING_MODES} ('tf' reproduces TF-slim)")
    return mode


def to_pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """``3 -> (3, 3)``; pairs pass through as ints."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def same_pads_2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1)) -> Pads:
    """(left, right, top, bottom) TF "SAME" padding of ``x``, in ``F.pad`` order."""
    top, bottom = same_padding(int(x.shape[-2]), kernel[0], stride[0], dilation[0])
    left, right = same_padding(int(x.shape[-1]), kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def static_same_padding(kernel: tuple[int, int], stride: tuple[int, int],
                        dilation: tuple[int, int] = (1, 1)) -> tuple[int, int] | None:
    """The native (height, width) padding equal to TF "SAME" for every input size, or None if it depends on it.

    Stride 1 with an odd effective kernel always pads symmetrically, by half the effective kernel.
    """
    if stride != (1, 1) or any((k - 1) * d % 2 for k, d in zip(kernel, dilation)):
        return None
    return (kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2


def same_padding_for(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int] = (1, 1)) -> tuple[tuple[int, int], Pads | None]:
    """How to run a TF "SAME" op on ``x``: ``(native padding, None)`` when the padding is symmetric, else
    ``((0, 0), pads)`` with the ``F.pad`` pads to apply first."""
    left, right, top, bottom = pads = same_pads_2d(x, kernel, stride, dilation)
    if left == right and top == bottom:
        return (top, left), None
    return (0, 0), pads


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding (zeros), exact for any input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1, groups: int = 1,
                 bias: bool = False) -> None:
        kernel_size, stride, dilation = to_pair(kernel_size), to_pair(stride), to_pair(dilation)
        static = static_same_padding(kernel_size, stride, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=static or (0, 0),
                         dilation=dilation, groups=groups, bias=bias)
        self.dynamic = static is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dynamic:
            return super().forward(x)
        padding, pads = same_padding_for(x, self.kernel_size, self.stride, self.dilation)
        if pads is not None:
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


def real_cell_counts(x: torch.Tensor, kernel: int, stride: int, pads: Pads) -> torch.Tensor:
    """Per output cell, the fraction of its pooling window that lies inside ``x`` (a [1, 1, H', W'] map)."""
    ones = torch.ones((1, 1) + tuple(x.shape[-2:]), device=x.device, dtype=x.dtype)
    return F.avg_pool2d(F.pad(ones, pads), kernel, stride)


class Pool2dSame(nn.Module):
    """Average or max pooling with TF "SAME" semantics (``mode="tf"``) or timm's (``mode="timm"``)."""

    def __init__(self, kind: str, kernel_size: int, stride: int = 1, mode: str = "tf") -> None:
        super().__init__()
        if kind not in ("avg", "max"):
            raise ValueError(f"pool kind must be 'avg' or 'max', got {kind!r}")
        self.kind, self.kernel_size, self.stride, self.mode = kind, kernel_size, stride, check_padding_mode(mode)

    def extra_repr(self) -> str:
        return f"{self.kind}, kernel_size={self.kernel_size}, stride={self.stride}, mode={self.mode}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        padding, pads = same_padding_for(x, (k, k), (s, s))
        if self.kind == "max":
            if pads is None:
                return F.max_pool2d(x, k, s, padding)
            return F.max_pool2d(F.pad(x, pads, value=float("-inf")), k, s)
        if self.mode == "timm" and s > 1:
            # timm pads zeros explicitly for strided "same" pools, so they enter the divisor.
            return F.avg_pool2d(F.pad(x, same_pads_2d(x, (k, k), (s, s))), k, s)
        if pads is None:
            return F.avg_pool2d(x, k, s, padding, count_include_pad=False)
        return F.avg_pool2d(F.pad(x, pads), k, s) / real_cell_counts(x, k, s, pads)
