"""A frozen convolution whose weight is laid out for oneDNN once, with an optional fused ReLU.

``F.conv2d`` on CPU hands the weight to oneDNN in PyTorch's layout and oneDNN reorders it on every call; for
NASNet-A Large's 1x1 convs that reorder costs a third of the convolution. Packing the weight once (what
inductor's freezing does) removes it, and oneDNN's ReLU post-op removes a pass over the output. The results
are those of ``F.conv2d`` (oneDNN computes both).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .padding import Conv2dSame, same_padding_for, static_same_padding, to_pair

__all__ = ["PackedConv2d"]

# Batch-1 dense 1x1 convs on fewer input values than this run faster on PyTorch's own GEMM path, whose fixed
# cost per call is ~6 us against oneDNN's ~20 us (measured on the 14x14 and 7x7 stages of NASNet-A Mobile).
SMALL_DENSE_INPUT = 20480


def _onednn_op_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._convolution_pointwise.default  # noqa: B018 - absent in builds without oneDNN
        torch.ops.mkldnn._reorder_convolution_weight.default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


_ONEDNN = _onednn_op_available()


class PackedConv2d(nn.Module):
    """Eval-only 2-D convolution with TF "SAME" (``padding="same"``) or fixed padding and an optional ReLU.

    On CPU in float32 it runs ``mkldnn._convolution_pointwise`` with a weight packed on the first call (and
    again if the weight changes). Everywhere else, and while tracing or exporting (TorchScript, ONNX,
    ``torch.compile``), it runs ``F.conv2d``, so exports contain standard convolutions.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: int | tuple[int, int] = 1,
                 padding: str | int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
                 relu: bool = False) -> None:
        super().__init__()
        # The tensors are shared, not copied: slices of a merged conv's weight cost no memory.
        self.weight = nn.Parameter(weight.detach(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.kernel_size = (int(weight.shape[-2]), int(weight.shape[-1]))
        self.stride, self.dilation, self.groups, self.relu = to_pair(stride), to_pair(dilation), groups, relu
        self.same = padding == "same"
        static = static_same_padding(self.kernel_size, self.stride, self.dilation) if self.same else None
        if static is not None:
            self.same, padding = False, static
        self.padding = (0, 0) if self.same else to_pair(padding)  # type: ignore[arg-type]
        self._packed: tuple[tuple[int, int], torch.Tensor] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, relu: bool = False) -> "PackedConv2d":
        """The same convolution (``Conv2dSame`` keeps its TF padding), followed by ``relu`` if asked."""
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"PackedConv2d needs numeric zero padding, got {conv.padding!r}/{conv.padding_mode!r}")
        padding = "same" if isinstance(conv, Conv2dSame) and conv.dynamic else conv.padding
        return cls(conv.weight, conv.bias, stride=conv.stride, padding=padding, dilation=conv.dilation,
                   groups=conv.groups, relu=relu)

    def extra_repr(self) -> str:
        padding = "same" if self.same else self.padding
        return (f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={padding}, groups={self.groups}, relu={self.relu}")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_packed"] = None  # oneDNN's opaque tensors neither pickle nor deep-copy; repacked on demand
        return state

    def _use_onednn(self, x: torch.Tensor) -> bool:
        # Runs before every conv call, so only what can change per call is checked. Exports need no check of
        # their own: the TorchScript ONNX exporter traces and the dynamo one compiles.
        if not (_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.enabled):
            return False
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return False
        if x.requires_grad and torch.is_grad_enabled():
            return False
        dense_1x1 = self.groups == 1 and self.kernel_size == (1, 1)
        return not (dense_1x1 and x.shape[0] == 1 and x.numel() < SMALL_DENSE_INPUT)

    def _packed_weight(self, x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        weight = self.weight
        key = (weight.data_ptr(), weight._version)
        if self._packed is None or self._packed[0] != key:
            # The input size and padding only guide oneDNN's choice of layout; the packed weight serves all.
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight, list(padding), list(self.stride), list(self.dilation), self.groups, list(x.shape))
            self._packed = (key, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.same:
            padding, pads = same_padding_for(x, self.kernel_size, self.stride, self.dilation)
            if pads is not None:
                x = F.pad(x, pads)
        if self._use_onednn(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._packed_weight(x, padding), self.bias, list(padding), list(self.stride), list(self.dilation),
                self.groups, "relu" if self.relu else "none", [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return F.relu(y, inplace=True) if self.relu else y
