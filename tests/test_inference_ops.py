"""The building blocks of ``optimize_for_inference``: packed convs and grouped separable convs equal the ops
they replace, in every padding case, batch size and memory format, and exports still see standard convs."""
from __future__ import annotations

import copy
import pickle
import weakref

import pytest
import torch
import torch.nn.functional as F

from nasnet_zoo import OPS
from nasnet_zoo.inference import PackedConv2d, SepConvGroup
from nasnet_zoo.inference.fused_cell import ReluMemo
from nasnet_zoo.layers.ops import BNConfig, CellOp, ConvBN, FactorizedReduce, Identity, SepConvStack, build_op
from nasnet_zoo.layers.padding import Conv2dSame
from nasnet_zoo.testing import max_diff, randomize_batchnorm

TOL = 1e-5


def _fused_output(op: CellOp, x: torch.Tensor) -> torch.Tensor:
    reads_relu, body = copy.deepcopy(op).fuse()
    return body(F.relu(x) if reads_relu else x)


@torch.no_grad()
@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride, in_channels", [(1, 8), (1, 6), (2, 8)])  # 6 -> 8: the ops that must project
@pytest.mark.parametrize("size", [15, 16])  # odd: symmetric SAME padding; even: one more cell after
@pytest.mark.parametrize("padding", ["tf", "timm"])
def test_every_op_fuses_to_its_own_outputs(name: str, stride: int, in_channels: int, size: int, padding: str) -> None:
    """The proof a new search-space op needs: its inference form (``fuse``) equals the op in eval mode."""
    torch.manual_seed(0)
    op = randomize_batchnorm(build_op(name, in_channels, 8, stride, padding=padding, bn=BNConfig()))
    x = torch.randn(2, in_channels, size, size)
    for layout in (torch.contiguous_format, torch.channels_last):
        assert max_diff(_fused_output(op, x.contiguous(memory_format=layout)), op(x)) < TOL, layout


@torch.no_grad()
@pytest.mark.parametrize("adapter", [
    Identity(), ConvBN(6, 8, 1, relu_first=True), ConvBN(6, 8, 1, relu_first=False),
    FactorizedReduce(6, 8, relu_first=True, bn=BNConfig()), FactorizedReduce(6, 7, relu_first=False, bn=BNConfig()),
], ids=lambda op: repr(op).split("(")[0] + ("_relu" if getattr(op, "relu_first", False) else ""))
@pytest.mark.parametrize("size", [15, 16])
def test_cell_input_and_output_adapters_fuse_to_their_outputs(adapter: CellOp, size: int) -> None:
    torch.manual_seed(0)
    op = randomize_batchnorm(copy.deepcopy(adapter))
    x = torch.randn(2, 6, size, size)
    assert max_diff(_fused_output(op, x), op(x)) < TOL


def test_an_op_without_a_fused_form_says_what_to_add() -> None:
    class NewOp(CellOp):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(NotImplementedError, match="NewOp has no inference form: define its fuse"):
        NewOp().fuse()


@torch.no_grad()
@pytest.mark.parametrize("kernel, stride, groups", [(1, 1, 1), (3, 2, 1), (5, 1, 8), (7, 2, 8), (1, 1, 2)])
@pytest.mark.parametrize("size", [(15, 15), (16, 10)])  # odd: symmetric SAME padding; even: one more cell after
@pytest.mark.parametrize("batch", [1, 3])
def test_packed_conv_equals_conv2d_same(kernel: int, stride: int, groups: int, size: tuple[int, int],
                                        batch: int) -> None:
    torch.manual_seed(0)
    conv = Conv2dSame(8, 16, kernel, stride=stride, groups=groups, bias=True)
    packed = PackedConv2d.from_conv(conv, relu=True)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(batch, 8, *size).contiguous(memory_format=layout)
        assert max_diff(packed(x), F.relu(conv(x))) < TOL


@torch.no_grad()
def test_packed_conv_follows_weight_changes_and_copies() -> None:
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    original = conv.weight.detach().clone()
    packed = PackedConv2d.from_conv(conv)
    x = torch.randn(2, 4, 9, 9)
    packed(x)  # packs the weight
    packed.weight.mul_(2)  # the packed copy must follow
    assert max_diff(packed(x), F.conv2d(x, 2 * original, conv.bias, padding=1)) < TOL
    for clone in (copy.deepcopy(packed), pickle.loads(pickle.dumps(packed))):
        assert max_diff(clone(x), conv(x)) < TOL


def test_packed_conv_traces_to_a_standard_convolution() -> None:
    packed = PackedConv2d.from_conv(torch.nn.Conv2d(4, 6, 3, padding=1), relu=True)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        graph = torch.jit.trace(packed, x).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    assert "aten::_convolution" in kinds and not any(kind.startswith("mkldnn") for kind in kinds)


def test_packed_conv_rejects_string_padding() -> None:
    with pytest.raises(ValueError, match="numeric zero padding"):
        PackedConv2d.from_conv(torch.nn.Conv2d(4, 6, 3, padding="same"))


@torch.no_grad()
@pytest.mark.parametrize("stride, kernels", [(1, (3, 5, 3, 7)), (2, (5, 7)), (2, (3,))])
@pytest.mark.parametrize("size", [14, 13])
@pytest.mark.parametrize("stack_limit", [0, 10**9])  # each conv on its own / all stacked into grouped convs
def test_sep_conv_group_equals_the_stacks_it_merges(stride: int, kernels: tuple[int, ...], size: int,
                                                    stack_limit: int) -> None:
    torch.manual_seed(0)
    stacks = [randomize_batchnorm(SepConvStack(6, 6, k, stride, bn=BNConfig())).eval() for k in kernels]
    inputs = [torch.randn(2, 6, size, size).contiguous(memory_format=torch.channels_last) for _ in kernels]
    expected = [stack(x) for stack, x in zip(stacks, inputs)]
    group = SepConvGroup(copy.deepcopy(stacks), stack_limit=stack_limit)
    outputs = group(inputs, F.relu)
    assert len(outputs) == len(kernels)
    assert all(max_diff(a, b) < TOL for a, b in zip(outputs, expected))


def test_sep_conv_group_refuses_unequal_channels() -> None:
    stacks = [SepConvStack(6, 6, 3, 1, bn=BNConfig()), SepConvStack(12, 6, 3, 1, bn=BNConfig())]
    with pytest.raises(ValueError, match="equal input and output channels"):
        SepConvGroup(stacks)


def test_relu_memo_reuses_by_identity_and_recycles_evicted_buffers() -> None:
    memo = ReluMemo(size=2, layouts=1)
    a, b, c = torch.randn(3), torch.randn(3), torch.randn(3)
    first = memo(a)
    assert memo(a) is first and torch.equal(first, F.relu(a))
    assert memo(b) is not first
    assert memo(c) is first and torch.equal(first, F.relu(c))  # a evicted: its buffer holds relu(c) now
    assert torch.equal(memo(a), F.relu(a))  # a is computed afresh


def test_relu_memo_keeps_no_input_alive_and_copies_empty() -> None:
    memo = ReluMemo()
    x = torch.randn(3)
    memo(x)
    alive = weakref.ref(x)
    del x
    assert alive() is None
    assert copy.deepcopy(memo).size == memo.size and pickle.loads(pickle.dumps(memo)).size == memo.size
