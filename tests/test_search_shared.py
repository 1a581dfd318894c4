"""Weight sharing (issue 14): the supernet's paths are the stand-alone children, the shared search loop, resume
after SIGKILL, torchrun data parallelism, AMP code paths and the errors a shared search gives before any work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nasnet_zoo import NASNET_A, build_nasnet
from nasnet_zoo.layers.ops import FactorizedReduce
from nasnet_zoo.search.space import SearchSpace
from nasnet_zoo.search.supernet import Supernet

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def _genotypes(n: int, seed: int = 0) -> list:
    space, rng = SearchSpace(), np.random.default_rng(seed)
    return [space.to_genotype(space.random_decisions(rng)) for _ in range(n)] + [NASNET_A]


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet(cells_per_stack=1, filters=4, image_size=8)


def test_a_genotypes_path_has_the_ops_inputs_and_strides_of_the_stand_alone_child(supernet):
    for genotype in _genotypes(6):
        child = build_nasnet(genotype, cells_per_stack=1, num_conv_filters=4, stem="cifar", num_classes=10,
                             image_size=8, aux_head=False)
        expected = []
        for name, cell in child.cells.items():
            for b, (block, pair) in enumerate(zip(cell.genotype.blocks, cell.blocks)):
                for side, i, op in zip(("left", "right"), block.inputs, block.ops):
                    module = pair[side]
                    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
                    pools = [m for m in module.modules() if hasattr(m, "kind") and hasattr(m, "stride")]
                    stride = (convs[0].stride[0] if convs and not pools else pools[0].stride) if convs or pools else 1
                    in_channels = convs[0].in_channels if convs and not pools else None
                    expected.append((name, b, side, i, op, stride, in_channels, type(module).__name__))
        path = supernet.path(genotype)
        modules = {(p.cell, p.block, p.side): m for p, m in zip(path, _path_modules(supernet, genotype))}
        got = []
        for p in path:
            module = modules[(p.cell, p.block, p.side)]
            convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
            pools = [m for m in module.modules() if hasattr(m, "kind") and hasattr(m, "stride")]
            in_channels = convs[0].in_channels if convs and not pools else None
            got.append((p.cell, p.block, p.side, p.input, p.op, p.stride, in_channels, type(module).__name__))
            if in_channels is not None:
                assert in_channels == p.in_channels
        assert got == expected


def _path_modules(supernet: Supernet, genotype) -> list[torch.nn.Module]:
    layouts = supernet._layouts(genotype)
    out = []
    for plan in supernet._plans:
        cell = supernet.cells[plan.name]
        g = genotype.reduction if plan.reduction else genotype.normal
        out += [m for *_, m in cell.path(g, layouts[plan.prev] if plan.prev is not None else None)]
    return out


def test_the_extracted_child_computes_what_the_supernet_path_computes(supernet):
    x = torch.randn(6, 3, 8, 8)
    for genotype in _genotypes(5, seed=1):
        child = supernet.extract(genotype).train()  # batch statistics, like the supernet's BatchNorm
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, genotype), child(x), rtol=1e-5, atol=1e-5)
        assert sum(isinstance(m, FactorizedReduce) for m in child.modules()) >= 2  # reductions are wired in


def test_only_the_sampled_path_gets_gradients(supernet):
    genotype = _genotypes(1, seed=2)[0]
    supernet.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(supernet(torch.randn(4, 3, 8, 8), genotype), torch.arange(4)).backward()
    on_path = {id(m) for m in _path_modules(supernet, genotype)}
    for cell in supernet.cells.values():
        for op in cell.ops.values():
            grads = [p.grad is not None for p in op.parameters()]
            assert all(grads) if id(op) in on_path else not any(grads)
    with_grad = sum(p.numel() for p in supernet.parameters() if p.grad is not None)
    assert with_grad < sum(p.numel() for p in supernet.parameters()) / 20
    supernet.zero_grad(set_to_none=True)
