"""Inference mode for NASNet models: same outputs, less work per image.

``optimize_for_inference`` returns an eval-only copy of a ``NASNet`` or ``NASNetFeatures`` in which

* every BatchNorm is folded into the convolution before it (for ``FactorizedReduce`` each half of the BN
  goes into its own path), so BN costs nothing;
* each cell computes ``relu(state)`` once per state and hands it to every op that starts with a ReLU
  (in NASNet-A several separable convs read the same state, each applying its own ReLU);
* weights and activations use ``torch.channels_last``, in which oneDNN's depthwise convs and pools run 2-6x
  faster on CPU;
* factorized reductions subsample before their 1x1 convs, and TF "SAME" average pools with asymmetric
  padding divide by a cached map of real-cell counts instead of recomputing it per call.

``freeze=True`` adds TorchScript graphs per input shape (``FrozenPerShape``), the fastest CPU path.

The original model is left untouched; the copy has the same public interface (``forward``, ``end_points``,
``feature_info``) because only the stem and the cells are swapped for fused equivalents.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .cell import Cell
from .features import FeatureInfo
from .layers.ops import ConvBN, ConvOp, FactorizedReduce, IdentityOp, PoolOp, SepConv, SepConvStack
from .layers.padding import Pool2dSame, same_padding

__all__ = ["FrozenPerShape", "FusedCell", "fold_bn", "optimize_for_inference"]


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


def _folded(conv_bn: ConvBN) -> nn.Conv2d:
    fold_bn(conv_bn.conv, conv_bn.bn)
    return conv_bn.conv


class _FusedFactorizedReduce(nn.Module):
    """``FactorizedReduce`` with its BN folded into the two paths (input ReLU handled by the caller).

    Each stride-2 1x1 path reads every other pixel, so it subsamples first and convolves a quarter of the
    data; the shifted path pads only its subsampled input instead of copying the full-size map.
    """

    def __init__(self, op: FactorizedReduce) -> None:
        super().__init__()
        half = op.path1.out_channels
        fold_bn(op.path1, op.bn, slice(0, half))
        fold_bn(op.path2, op.bn, slice(half, None))
        op.path1.stride = op.path2.stride = (1, 1)
        self.path1, self.path2 = op.path1, op.path2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        shifted = F.pad(x[:, :, 1::2, 1::2], (0, int(width) % 2, 0, int(height) % 2))
        return torch.cat([self.path1(x[:, :, ::2, ::2]), self.path2(shifted)], dim=1)


class _CachedAvgPool(nn.Module):
    """TF "SAME" average pool whose divisor map (real cells per window) is built once per input size.

    Symmetric padding uses PyTorch's native ``count_include_pad=False``, exactly as ``Pool2dSame``; the
    asymmetric case (stride 2 on even sizes) sums the zero-padded window and multiplies by the cached map,
    where ``Pool2dSame`` pools a map of ones on every call.
    """

    def __init__(self, pool: Pool2dSame) -> None:
        super().__init__()
        self.kernel_size, self.stride = pool.kernel_size, pool.stride
        self._inverse_counts: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        top, bottom = same_padding(int(x.shape[-2]), k, s)
        left, right = same_padding(int(x.shape[-1]), k, s)
        if top == bottom and left == right:
            return F.avg_pool2d(x, k, s, (top, left), count_include_pad=False)
        pads = (left, right, top, bottom)
        key = (int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype)
        inverse = self._inverse_counts.get(key)
        if inverse is None:
            ones = F.pad(torch.ones((1, 1) + key[:2], device=x.device, dtype=x.dtype), pads)
            # k*k / real cells; plain avg_pool2d (not divisor_override, which ONNX exporters mistranslate).
            inverse = 1.0 / F.avg_pool2d(ones, k, s)
            self._inverse_counts[key] = inverse
        return F.avg_pool2d(F.pad(x, pads), k, s) * inverse


def _fused_pool(pool: Pool2dSame) -> nn.Module:
    # timm mode counts padding on purpose and max pools need no divisor: keep those as they are.
    return _CachedAvgPool(pool) if pool.kind == "avg" and pool.mode == "tf" else pool


def _fused_sep_conv(sep: SepConv) -> nn.Sequential:
    fold_bn(sep.pointwise, sep.bn)
    return nn.Sequential(sep.depthwise, sep.pointwise)


def _fuse_op(op: nn.Module) -> tuple[bool, nn.Module]:
    """Split one cell op into (reads the ReLU of its input?, BN-free body that follows that ReLU)."""
    if isinstance(op, nn.Identity):
        return False, op
    if isinstance(op, ConvBN):
        return op.relu_first, _folded(op)
    if isinstance(op, FactorizedReduce):
        return op.relu_first, _FusedFactorizedReduce(op)
    if isinstance(op, SepConvStack):
        first, second = (_fused_sep_conv(layer) for layer in op.layers)
        return True, nn.Sequential(*first, nn.ReLU(inplace=True), *second)
    if isinstance(op, ConvOp):
        fold_bn(op.convs[-1], op.bn)
        return True, op.convs
    if isinstance(op, PoolOp):
        pool = _fused_pool(op.pool)
        return False, pool if op.proj is None else nn.Sequential(pool, _folded(op.proj))
    if isinstance(op, IdentityOp):
        return (False, nn.Identity()) if op.proj is None else (True, _folded(op.proj))
    raise TypeError(f"optimize_for_inference does not know the op {type(op).__name__}; add a rule for it")


class FusedCell(nn.Module):
    """Eval-only twin of a ``Cell``: BN folded, each state's ReLU computed once, no drop path."""

    def __init__(self, cell: Cell) -> None:
        """Takes over ``cell``'s modules and folds its BNs in place: pass a copy you no longer need."""
        super().__init__()
        self.genotype = cell.genotype
        self.out_channels = cell.out_channels
        self.pre0_relu, self.pre0 = _fuse_op(cell.pre0)
        self.pre1_relu, self.pre1 = _fuse_op(cell.pre1)
        self.blocks = nn.ModuleList()
        relu_flags: list[tuple[bool, bool]] = []
        for pair in cell.blocks:
            (left_relu, left), (right_relu, right) = _fuse_op(pair["left"]), _fuse_op(pair["right"])
            self.blocks.append(nn.ModuleDict({"left": left, "right": right}))
            relu_flags.append((left_relu, right_relu))
        self._relu_flags = relu_flags
        self.align = nn.ModuleDict({key: self._fuse_align(op) for key, op in cell.align.items()})

    @staticmethod
    def _fuse_align(op: nn.Module) -> nn.Module:
        reads_relu, body = _fuse_op(op)
        assert not reads_relu, "cell-output alignment never starts with a ReLU"
        return body

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        prev = x if prev is None else prev
        states = [self.pre0(F.relu(x) if self.pre0_relu else x),
                  self.pre1(F.relu(prev) if self.pre1_relu else prev)]
        relu_of: dict[int, torch.Tensor] = {}

        def read(index: int, relu: bool) -> torch.Tensor:
            if not relu:
                return states[index]
            if index not in relu_of:
                relu_of[index] = F.relu(states[index])
            return relu_of[index]

        for block, pair, (left_relu, right_relu) in zip(self.genotype.blocks, self.blocks, self._relu_flags):
            left = pair["left"](read(block.inputs[0], left_relu))
            right = pair["right"](read(block.inputs[1], right_relu))
            if block.combiner == "concat":
                states.append(torch.cat([left, right], dim=1))
            elif any(left is state for state in states):  # an identity op passed a state through
                states.append(left + right)
            else:
                states.append(left.add_(right))
        outputs = [self.align[str(i)](states[i]) if str(i) in self.align else states[i] for i in self.genotype.concat]
        return torch.cat(outputs, dim=1)


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True, freeze: bool = False) -> nn.Module:
    """An eval-only copy of a NASNet (or its ``features_only`` backbone) with equal outputs, faster on CPU.

    The copy refuses training mode: its BatchNorms are gone, so training it would silently learn nothing
    about batch statistics. ``freeze=True`` wraps it in ``FrozenPerShape`` (TorchScript graphs per input
    shape, faster still; only ``forward`` and ``feature_info`` remain).
    """
    if not (hasattr(model, "stem") and hasattr(model, "cells")):
        raise TypeError(f"optimize_for_inference expects a NASNet or NASNetFeatures, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    stem_conv = fused.stem.conv
    fold_bn(stem_conv, fused.stem.bn)
    stem: list[nn.Module] = [_ToChannelsLast(), stem_conv] if channels_last else [stem_conv]
    fused.stem = nn.Sequential(*stem)
    for name, cell in list(fused.cells.items()):
        fused.cells[name] = FusedCell(cell)
    if getattr(fused, "aux_head", None) is not None:
        fused.aux_head = None  # runs only in training
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    fused.train = _refuse_training.__get__(fused)  # type: ignore[method-assign]
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return FrozenPerShape(fused) if freeze else fused


def _refuse_training(self: nn.Module, mode: bool = True) -> nn.Module:
    if mode:
        raise RuntimeError("this model was optimised for inference (BatchNorm folded into convolutions); "
                           "train the original model and call optimize_for_inference again")
    return self


class FrozenPerShape(nn.Module):
    """Runs an optimised model through a TorchScript graph traced and frozen once per input shape.

    Freezing turns weights into constants and ``torch.jit.optimize_for_inference`` lets oneDNN pre-pack them
    and fuse conv + add/ReLU; with no Python between the ~1000 ops, it runs 1.15-1.4x faster than the eager
    optimised model for NASNet-A Mobile on CPU and ~1.7x for Large (docs/performance.md), with equal outputs. Tracing bakes the TF "SAME" paddings of one
    input size into the graph, hence one graph per shape (each keeps its own copy of the weights: use it for
    serving fixed sizes). ``torch.jit`` is deprecated in favour of ``torch.compile``, which here gains less
    (~1.1x) after minutes of compilation; this class is the short path until that changes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype, torch.device], torch.jit.ScriptModule] = {}

    @property
    def feature_info(self) -> FeatureInfo:
        """The wrapped backbone's levels (``features_only`` models only)."""
        return self.model.feature_info

    def train(self, mode: bool = True) -> "FrozenPerShape":
        if mode:
            raise RuntimeError("FrozenPerShape runs frozen inference graphs; train the original model instead")
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check = getattr(self.model, "check_input", None) or self.model._check_input
        check(x)  # traced graphs skip the model's own check
        key = (tuple(x.shape), x.dtype, x.device)
        graph = self._graphs.get(key)
        if graph is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarning: the paddings are constants of this shape, on purpose
                traced = torch.jit.trace(self.model, x, check_trace=False)
                graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            self._graphs[key] = graph
        return graph(x)
