"""TensorFlow "SAME" padding, reproduced exactly.

TF pads ``total = max((ceil(n/s) - 1) * s + k - n, 0)`` cells, ``total // 2`` before and the rest after, so
stride-2 ops on even inputs pad one more cell at the bottom/right. Average pooling divides by the real cells
only; max pooling never picks padding. Where the padding happens to be symmetric we call PyTorch's native
kernels with a static padding, which is exact and fastest; only the asymmetric case pays for an explicit pad.

``mode="timm"`` reproduces timm's dynamic same padding, whose stride-2 average pools pad zeros first and
count them in the divisor. It exists to prove weight equivalence with timm, not for new work.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PADDING_MODES = ("tf", "timm")


def check_padding_mode(mode: str) -> str:
    if mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; expected one of {PADDING_MODES} ('tf' reproduces TF-slim)")
    return mode


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def same_pads_2d(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) TF "SAME" padding of ``x``, in ``F.pad`` order."""
    top, bottom = same_padding(int(x.shape[-2]), kernel[0], stride[0], dilation[0])
    left, right = same_padding(int(x.shape[-1]), kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF "SAME" padding (zeros), exact for any input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, dilation: int | tuple[int, int] = 1, groups: int = 1,
                 bias: bool = False) -> None:
        kernel_size, stride, dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        # Stride 1 with an odd effective kernel is always symmetric: use the native padding.
        static = stride == (1, 1) and all(((k - 1) * d) % 2 == 0 for k, d in zip(kernel_size, dilation))
        padding = tuple(((k - 1) * d) // 2 for k, d in zip(kernel_size, dilation)) if static else (0, 0)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dynamic:
            return super().forward(x)
        left, right, top, bottom = same_pads_2d(x, self.kernel_size, self.stride, self.dilation)
        if left == right and top == bottom:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


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
        left, right, top, bottom = same_pads_2d(x, (k, k), (s, s))
        symmetric = left == right and top == bottom
        if self.kind == "max":
            if symmetric:
                return F.max_pool2d(x, k, s, (top, left))
            return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), k, s)
        if self.mode == "timm" and s > 1:
            # timm pads zeros explicitly for strided "same" pools, so they enter the divisor.
            return F.avg_pool2d(F.pad(x, (left, right, top, bottom)), k, s)
        if symmetric:
            return F.avg_pool2d(x, k, s, (top, left), count_include_pad=False)
        pads = (left, right, top, bottom)
        summed = F.avg_pool2d(F.pad(x, pads), k, s)
        real_cells = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), pads), k, s)
        return summed / real_cells
