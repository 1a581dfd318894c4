"""The NAS-Bench-201 supernet (issue 23, item 5): shapes, single-path gradients, sharing, learning, the tau figures."""
from __future__ import annotations

import pytest
import torch

from nasnet_zoo.search.nasbench201_supernet import SharedCell, Supernet, uniform_cell
from nasnet_zoo.search.spaces.nasbench201 import NASBench201Cell

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on the shared 2 cores run ~10x faster on one thread than two (thread contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cell(ops: str) -> NASBench201Cell:
    return NASBench201Cell(tuple(ops.split()))


def test_output_shape_and_skeleton() -> None:
    net = Supernet(channels=4, cells_per_stage=2)
    out = net(torch.randn(3, 3, 16, 16), NASBench201Cell.from_arch(BEST))
    assert out.shape == (3, 10)
    cells = [m for m in net.layers if isinstance(m, SharedCell)]
    assert len(cells) == 6 and len(net.layers) == 8  # 3 stages x 2 cells + 2 reductions
    assert net.classifier.in_features == 16          # 4C after two reductions
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.affine and not m.track_running_stats for m in bns)


def test_only_sampled_candidates_get_gradients() -> None:
    torch.manual_seed(0)
    net = Supernet(channels=4, cells_per_stage=1)
    # edge 0 conv3x3, edge 3 conv1x1, everything else skip / none: only those two candidates per cell may learn
    cell = _cell("nor_conv_3x3 skip_connect none nor_conv_1x1 skip_connect avg_pool_3x3")
    net(torch.randn(4, 3, 8, 8), cell).sum().backward()
    for layer in net.layers:
        if not isinstance(layer, SharedCell):
            continue
        for k, edge in enumerate(layer.edges):
            for name, module in edge.candidates.items():
                for p in module.parameters():
                    used = (k, name) in {(0, "nor_conv_3x3"), (3, "nor_conv_1x1")}
                    assert (p.grad is not None and p.grad.abs().sum() > 0) == used, (k, name)


def test_parameter_free_cell_gives_no_conv_gradient() -> None:
    net = Supernet(channels=4, cells_per_stage=1)
    cell = _cell("skip_connect none skip_connect avg_pool_3x3 none skip_connect")
    net(torch.randn(4, 3, 8, 8), cell).sum().backward()
    for layer in net.layers:
        if isinstance(layer, SharedCell):
            assert all(p.grad is None for p in layer.parameters())
    assert net.stem[0].weight.grad is not None and net.classifier.weight.grad is not None


def test_cells_differing_in_one_edge_share_every_other_weight() -> None:
    torch.manual_seed(0)
    net = Supernet(channels=4, cells_per_stage=1)
    x = torch.randn(4, 3, 8, 8)
    a = _cell("nor_conv_3x3 nor_conv_1x1 nor_conv_3x3 avg_pool_3x3 nor_conv_3x3 nor_conv_1x1")
    b = _cell("nor_conv_3x3 nor_conv_1x1 nor_conv_3x3 avg_pool_3x3 nor_conv_3x3 nor_conv_3x3")
    net(x, a).sum().backward()
    grads_a = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    net(x, b).sum().backward()
    grads_b = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    # the same tensors serve both paths; only edge 5's candidate differs
    only_a, only_b = set(grads_a) - set(grads_b), set(grads_b) - set(grads_a)
    assert only_a and all(".edges.5.candidates.nor_conv_1x1." in n for n in only_a)
    assert only_b and all(".edges.5.candidates.nor_conv_3x3." in n for n in only_b)
    assert len(set(grads_a) & set(grads_b)) > 10
    # and a path's output depends on the one tensor the two cells share: change edge 0's 3x3 weight, both move
    with torch.no_grad():
        before = net(x, a), net(x, b)
        net.layers[0].edges[0].candidates["nor_conv_3x3"][1].weight.add_(1.0)
        after = net(x, a), net(x, b)
    assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_different_cell_positions_have_their_own_weights() -> None:
    net = Supernet(channels=4, cells_per_stage=2)
    first, second = net.layers[0], net.layers[1]
    assert first.edges[0].candidates["nor_conv_3x3"][1].weight is not second.edges[0].candidates["nor_conv_3x3"][1].weight


def test_a_few_uniform_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    net = Supernet(channels=4, cells_per_stage=1)
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    probe = NASBench201Cell.from_arch(BEST)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = torch.nn.functional.cross_entropy(net(x, probe), y).item()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x, uniform_cell(gen)), y).backward()
        opt.step()
    with torch.no_grad():
        end = torch.nn.functional.cross_entropy(net(x, probe), y).item()
    assert end < start - 0.3, (start, end)
