"""BN-free inference kernels for the cell ops: BatchNorm folded into the conv before it, convs packed for oneDNN.

Each op in ``nasnet_zoo.layers.ops`` builds its own inference form from these pieces (``CellOp.fuse``);
nothing here knows the op classes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .packed_conv import PackedConv2d
from .padding import Conv2dSame, Pool2dSame, real_cell_counts, same_padding_for

__all__ = ["CachedAvgPool", "FusedFactorizedReduce", "SepConvGroup", "fold_bn", "fuse_conv_bn", "fused_pool",
           "fused_sep_conv_stack"]

# Above this many input values a SepConvGroup runs its convs one by one: copying the inputs into one stack
# then costs more than the saved calls (measured on NASNet-A Mobile at batch 8 and Large at batch 1).
STACK_LIMIT = 1 << 20


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: slice = slice(None)) -> None:
    """Fold the eval-mode affine map of ``bn[channels]`` into ``conv`` (weight scaled, bias added) in place."""
    scale = bn.weight[channels] / torch.sqrt(bn.running_var[channels] + bn.eps)
    shift = bn.bias[channels] - bn.running_mean[channels] * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.clone())
    else:
        conv.bias.mul_(scale).add_(shift)


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, *, relu: bool = False) -> PackedConv2d:
    """``conv`` with ``bn`` folded in (``conv`` is modified: pass one you no longer need), as a PackedConv2d."""
    if bn is not None:
        fold_bn(conv, bn)
    return PackedConv2d.from_conv(conv, relu=relu)


class FusedFactorizedReduce(nn.Module):
    """``FactorizedReduce`` with its BN folded into the two paths (input ReLU handled by the caller).

    Each stride-2 1x1 path reads every other pixel, so it subsamples first and convolves a quarter of the
    data; the shifted path pads only its subsampled input instead of copying the full-size map.
    """

    def __init__(self, path1: nn.Conv2d, path2: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        """Folds ``bn`` into the two paths in place: pass modules you no longer need."""
        super().__init__()
        half = path1.out_channels
        fold_bn(path1, bn, slice(0, half))
        fold_bn(path2, bn, slice(half, None))
        path1.stride = path2.stride = (1, 1)
        self.path1, self.path2 = PackedConv2d.from_conv(path1), PackedConv2d.from_conv(path2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        shifted = F.pad(x[:, :, 1::2, 1::2], (0, int(width) % 2, 0, int(height) % 2))
        return torch.cat([self.path1(x[:, :, ::2, ::2]), self.path2(shifted)], dim=1)


class CachedAvgPool(nn.Module):
    """TF "SAME" average pool whose divisor map (real cells per window) is built once per input size.

    Symmetric padding uses PyTorch's native ``count_include_pad=False``, exactly as ``Pool2dSame``; the
    asymmetric case (stride 2 on even sizes) sums the zero-padded window and multiplies by the cached map,
    where ``Pool2dSame`` pools a map of ones on every call.
    """

    def __init__(self, pool: Pool2dSame) -> None:
        super().__init__()
        self.kernel_size, self.stride = pool.kernel_size, pool.stride
        self._inverse_counts: dict[tuple[int, int, torch.device, torch.dtype, bool], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        padding, pads = same_padding_for(x, (k, k), (s, s))
        if pads is None:
            return F.avg_pool2d(x, k, s, padding, count_include_pad=False)
        # A map made in inference mode cannot enter an autograd graph: one per mode.
        key = (int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype, torch.is_inference_mode_enabled())
        inverse = self._inverse_counts.get(key)
        if inverse is None:
            # k*k / real cells; plain avg_pool2d (not divisor_override, which ONNX exporters mistranslate).
            inverse = 1.0 / real_cell_counts(x, k, s, pads)
            self._inverse_counts[key] = inverse
        return F.avg_pool2d(F.pad(x, pads), k, s) * inverse


def fused_pool(pool: Pool2dSame) -> nn.Module:
    """The inference form of a SAME pool: cached divisors for TF average pools; timm mode counts padding on
    purpose and max pools need no divisor, so those stay as they are."""
    return CachedAvgPool(pool) if pool.kind == "avg" and pool.mode == "tf" else pool


def fused_sep_conv_stack(stack: nn.Module) -> nn.Module:
    """One ``SepConvStack`` on its own (BN folded, middle ReLU fused), reading the ReLU of its input."""
    return SepConvGroup([stack]).separate[0]


def _merged_depthwise(convs: list[Conv2dSame]) -> PackedConv2d:
    """One depthwise conv over the inputs stacked along channels; smaller kernels zero-embedded at the centre.

    TF "SAME" pads ``(k - 1 + base) // 2`` cells before, so a k x k kernel centred in a K x K one (K - k even)
    reads exactly the pixels it read alone, for every input size and stride.
    """
    size = max(c.kernel_size[0] for c in convs)
    if any(c.kernel_size[0] != c.kernel_size[1] or c.dilation != (1, 1) or c.stride != convs[0].stride
           or (size - c.kernel_size[0]) % 2 for c in convs):
        raise ValueError("merged depthwise convs need square, undilated kernels of one parity and one stride")
    weight = torch.zeros(sum(c.out_channels for c in convs), 1, size, size)
    start = 0
    for conv in convs:
        k, offset = conv.kernel_size[0], (size - conv.kernel_size[0]) // 2
        weight[start:start + conv.out_channels, :, offset:offset + k, offset:offset + k] = conv.weight.detach()
        start += conv.out_channels
    return PackedConv2d(weight, None, stride=convs[0].stride, padding="same", groups=weight.shape[0])


def _merged_pointwise(layers: list[nn.Module], *, relu: bool) -> PackedConv2d:
    """The pointwise convs (BN folded) as one grouped 1x1 conv: group i reads and writes layer i's channels."""
    for layer in layers:
        fold_bn(layer.pointwise, layer.bn)
    weight = torch.cat([layer.pointwise.weight.detach() for layer in layers])
    bias = torch.cat([layer.pointwise.bias.detach() for layer in layers])
    return PackedConv2d(weight, bias, groups=len(layers), relu=relu)


class SepConvGroup(nn.Module):
    """Stacked separable convs of one cell that read same-shaped inputs, run as four grouped convolutions.

    A NASNet-A cell applies up to five separable convs side by side, each four small oneDNN calls whose fixed
    cost (~20 us) dominates at Mobile's sizes. With their ReLU'd inputs stacked along channels, the N
    depthwise convs become one depthwise conv and the N pointwise convs one grouped conv (the middle ReLU
    fused into it): 4 calls instead of 4N, the same products summed. Stacking copies the inputs, which costs
    more than it saves on large maps, so above ``stack_limit`` input values each conv runs on its own, with
    weights that are views of the merged ones.
    """

    def __init__(self, stacks: Sequence[nn.Module], stack_limit: int = STACK_LIMIT) -> None:
        """``stacks``: ``SepConvStack`` modules, whose BNs are folded in place (pass copies you no longer need)."""
        super().__init__()
        if len({(s.layers[0].depthwise.in_channels, s.layers[0].pointwise.out_channels) for s in stacks}) != 1:
            raise ValueError("a SepConvGroup needs separable convs with equal input and output channels")
        first, second = [s.layers[0] for s in stacks], [s.layers[1] for s in stacks]
        self.count, self.stack_limit = len(stacks), stack_limit
        depthwise1, depthwise2 = [layer.depthwise for layer in first], [layer.depthwise for layer in second]
        pointwise1, pointwise2 = _merged_pointwise(first, relu=True), _merged_pointwise(second, relu=False)
        self.merged = None if self.count == 1 else nn.Sequential(
            _merged_depthwise(depthwise1), pointwise1, _merged_depthwise(depthwise2), pointwise2)
        self.separate = nn.ModuleList(
            nn.Sequential(PackedConv2d.from_conv(depthwise1[i]), _member(pointwise1, i, self.count),
                          PackedConv2d.from_conv(depthwise2[i]), _member(pointwise2, i, self.count))
            for i in range(self.count))

    def forward(self, inputs: list[torch.Tensor], relu: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
        """The N outputs for the N (pre-ReLU) ``inputs``; ``relu`` computes or recalls an input's ReLU."""
        if self.merged is not None and sum(x.numel() for x in inputs) <= self.stack_limit:
            stacked = F.relu(torch.cat(inputs, dim=1), inplace=True)
            return list(self.merged(stacked).chunk(self.count, dim=1))
        return [path(relu(x)) for path, x in zip(self.separate, inputs)]


def _member(pointwise: PackedConv2d, index: int, count: int) -> PackedConv2d:
    """Group ``index`` of a grouped 1x1 conv as a conv of its own, sharing the weight memory."""
    out = pointwise.weight.shape[0] // count
    rows = slice(index * out, (index + 1) * out)
    bias = None if pointwise.bias is None else pointwise.bias[rows]
    return PackedConv2d(pointwise.weight[rows], bias, relu=pointwise.relu)
