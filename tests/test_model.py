"""The generic cell and network builder: shapes, registry, features, drop path, searched genotypes."""
from __future__ import annotations

import copy

import pytest
import torch

import nasnet_zoo as nz
from nasnet_zoo import NASNET_A, OPS, Block, CellGenotype, Genotype


def test_registry_lists_and_suggests():
    assert {"nasnet_a_mobile", "nasnet_a_large", "nasnet_a_cifar"} <= set(nz.list_models())
    assert nz.list_models("*large") == ["nasnet_a_large"]
    with pytest.raises(ValueError, match="did you mean nasnet_a_mobile"):
        nz.create_model("nasnet_a_mobil")


def test_create_model_overrides_and_config():
    m = nz.create_model("nasnet_a_mobile", num_classes=10)
    assert m.classifier.out_features == 10
    assert m.pretrained_cfg["input_size"] == (3, 224, 224) and m.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(TypeError, match="unknown settings"):
        nz.create_model("nasnet_a_mobile", num_cels=3)


@pytest.mark.parametrize("name, size, channels, strides, sides", [
    ("nasnet_a_mobile", 224, [32, 44, 264, 528, 1056], [2, 4, 8, 16, 32], [111, 56, 28, 14, 7]),
    ("nasnet_a_cifar", 32, [192, 384, 768], [1, 2, 4], [32, 16, 8]),
])
def test_features_only_levels(name, size, channels, strides, sides):
    f = nz.create_model(name, features_only=True).eval()
    assert f.feature_info.channels() == channels and f.feature_info.reduction() == strides
    with torch.no_grad():
        maps = f(torch.randn(1, 3, size, size))
    assert [m.shape[1] for m in maps] == channels
    assert [m.shape[-1] for m in maps] == sides


def test_features_out_indices_strides_4_to_32():
    f = nz.create_model("nasnet_a_mobile", features_only=True, out_indices=(1, 2, 3, 4))
    assert f.feature_info.reduction() == [4, 8, 16, 32]
    assert "cell_11" in f.cells and len(f.cells) == 16
    f8 = nz.create_model("nasnet_a_mobile", features_only=True, out_indices=(2,))
    assert list(f8.cells)[-1] == "cell_3"  # cells after the deepest level are not kept
    with pytest.raises(ValueError, match="out of range"):
        nz.create_model("nasnet_a_mobile", features_only=True, out_indices=(7,))


def test_large_wiring_skips_reduction_input():
    def inputs_of_cell(model, name):
        """The trunk outputs a cell reads, from the public trunk API: a range starting at the cell needs them."""
        names = [info["name"] for info in model.output_info()]
        start = model.output_index(name)
        return [names[i] for i in model.cell_range(start, start + 1).seeds]

    # TF-slim's skip_reduction_layer_input: the cell after a reduction reads the output two cells back.
    assert inputs_of_cell(nz.create_model("nasnet_a_large"), "cell_6") == ["cell_4", "reduction_cell_0"]
    assert inputs_of_cell(nz.create_model("nasnet_a_mobile"), "cell_4") == ["cell_3", "reduction_cell_0"]


def test_aux_head_in_training_only():
    m = nz.build_nasnet(NASNET_A, cells_per_stack=1, num_conv_filters=8, stem="cifar", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = m.train()(x)
    assert logits.shape == aux.shape == (2, 10)
    assert m.eval()(x).shape == (2, 10)


def test_drop_path_schedule_and_eval_identity():
    m = nz.build_nasnet(NASNET_A, cells_per_stack=1, num_conv_filters=8, stem="cifar", num_classes=10,
                        drop_path_keep_prob=0.6, aux_head=False)
    paths = [c.drop_path for c in m.cells.values()]
    assert paths[0].cell_ratio == pytest.approx(1 / 5) and paths[-1].cell_ratio == pytest.approx(1.0)
    m.set_drop_path_progress(0.0)
    assert all(p.current_keep_prob == 1.0 for p in paths)
    m.set_drop_path_progress(0.5)
    assert paths[-1].current_keep_prob == pytest.approx(1 - 0.5 * 0.4)
    m.set_drop_path_progress(2.0)  # clamped: never below keep0 for the last cell
    assert paths[-1].current_keep_prob == pytest.approx(0.6)
    x = torch.randn(4, 3, 32, 32)
    no_drop = copy.deepcopy(m)
    for cell in no_drop.cells.values():
        cell.drop_path = torch.nn.Identity()
    # eval: exactly the network without drop path, although the schedule is at its strongest
    assert torch.equal(m.eval()(x), no_drop.eval()(x))
    m.train()
    no_drop.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m(x))
    assert not torch.allclose(a, no_drop(x))  # training does drop


@pytest.mark.parametrize("name, total", [("nasnet_a_mobile", 16), ("nasnet_a_large", 22)])
def test_drop_path_keep_prob_follows_tf_cell_numbering(name: str, total: int) -> None:
    """TF-slim counts the two ImageNet stem cells and both reduction cells: keep = 1 - (c + 1) / T * p * (1 - k0)."""
    with torch.device("meta"):  # the schedule needs the cells, not their weights
        m = nz.create_model(name, drop_path_keep_prob=0.6)
    normal = (total - 4) // 3  # normal cells per stack
    numbering = {"cell_stem_0": 0, "cell_stem_1": 1, "cell_0": 2, f"cell_{normal - 1}": normal + 1,
                 "reduction_cell_0": normal + 2, f"cell_{normal}": normal + 3, f"cell_{normal + 1}": normal + 4,
                 "reduction_cell_1": 2 * normal + 3, f"cell_{3 * normal - 1}": total - 1}
    m.set_drop_path_progress(0.5)
    for cell_name, c in numbering.items():
        path = m.cells[cell_name].drop_path
        assert path.cell_ratio == pytest.approx((c + 1) / total), cell_name
        assert path.current_keep_prob == pytest.approx(1 - (c + 1) / total * 0.5 * 0.4), cell_name
    assert len(m.cells) == total


class _DropEverything(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@torch.no_grad()
def test_identity_ops_are_never_dropped():
    """TF-slim applies drop path to every op but "none" (identity), even where identity projects with a 1x1."""
    from nasnet_zoo.cell import Cell
    genotype = CellGenotype(blocks=(
        Block((0, 1), ("identity", "sep_conv_3x3")),
        Block((1, 1), ("identity", "identity")),
        Block((0, 1), ("sep_conv_3x3", "avg_pool_3x3")),
    ), concat=(2, 3, 4))
    cell = Cell(genotype, reduction=False, in_channels=8, prev_channels=8, prev_is_larger=False, filters=8).eval()
    cell.drop_path = _DropEverything()
    x, prev = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6)
    out = cell(x, prev)
    block0, block1, block2 = out.split(8, dim=1)
    assert torch.equal(block0, cell.pre0(x))  # its sep conv was dropped, its identity kept
    assert torch.equal(block1, prev + prev)
    assert torch.equal(block2, torch.zeros_like(block2))  # pools and convs are dropped


def test_drop_path_drops_whole_examples_and_rescales():
    p = nz.ScheduledDropPath(0.5, 1.0)
    p.progress = 1.0
    p.train()
    out = p(torch.ones(1000, 3, 2, 2))
    per_example = out.flatten(1)
    assert set(per_example.unique().tolist()) <= {0.0, 2.0}
    assert (per_example.std(1) == 0).all()
    assert 0.4 < (per_example[:, 0] > 0).float().mean() < 0.6


def test_searched_genotype_with_every_op_and_concat_combiner():
    ops = list(OPS)
    normal = CellGenotype(blocks=(
        Block((0, 1), (ops[0], ops[1]), "add"),
        Block((1, 2), (ops[2], ops[3]), "concat"),
        Block((3, 0), (ops[4], ops[5]), "add"),
        Block((4, 2), (ops[6], ops[7]), "concat"),
        Block((5, 1), (ops[8], ops[9]), "add"),
    ), concat=(0, 3, 5, 6))
    reduction = CellGenotype(blocks=(
        Block((0, 1), (ops[10], ops[11]), "add"),
        Block((2, 0), (ops[12], ops[0]), "concat"),
        Block((1, 3), (ops[4], ops[7]), "add"),
    ), concat=(1, 3, 4))
    g = Genotype(normal=normal, reduction=reduction, name="everything")
    for stem, size in (("cifar", 32), ("imagenet", 64)):
        m = nz.build_nasnet(g, cells_per_stack=1, num_conv_filters=8, stem=stem, num_classes=5)
        logits, aux = m.train()(torch.randn(2, 3, size, size))
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()
        logits.sum().backward()


def test_penultimate_filters_notation():
    m = nz.build_nasnet(NASNET_A, cells_per_stack=2, penultimate_filters=96, stem="cifar", num_classes=10)
    assert m.num_features == 96
    with pytest.raises(ValueError, match="not a multiple of 24"):
        nz.build_nasnet(NASNET_A, cells_per_stack=2, penultimate_filters=100, stem="cifar")


def test_param_counts_match_paper():
    def params(name):
        return sum(p.numel() for p in nz.create_model(name, aux_head=False).parameters())
    assert abs(params("nasnet_a_mobile") / 5.3e6 - 1) < 0.01
    assert abs(params("nasnet_a_large") / 88.9e6 - 1) < 0.01
    assert round(params("nasnet_a_cifar") / 1e6, 1) == 3.3  # the paper gives 3.3M to one decimal


def test_forward_intermediates_gives_every_end_point_and_stops_early():
    m = nz.build_nasnet(NASNET_A, cells_per_stack=1, num_conv_filters=8, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        points = m.end_points(x)
        last, every = m.forward_intermediates(x)
        named = m.forward_intermediates(x, ["stem", "cell_0"], intermediates_only=True)
        last_two = m.forward_intermediates(x, 2, intermediates_only=True)
    endpoints = [info["endpoint"] for info in m.output_info()]
    assert endpoints[:3] == ["conv0_bn", "cell_stem_0", "Stem"] and len(every) == len(endpoints)
    assert all(torch.equal(y, points[name]) for y, name in zip(every, endpoints))
    assert torch.equal(last, every[-1]) and torch.equal(named[1], points["Cell_0"])
    assert torch.equal(last_two[0], every[-2]) and torch.equal(last_two[1], every[-1])
    ran = []
    hooks = [cell.register_forward_hook(lambda mod, inp, out, n=n: ran.append(n)) for n, cell in m.cells.items()]
    m.forward_intermediates(x, ["cell_0"], stop_early=True)
    for hook in hooks:
        hook.remove()
    assert ran[-1] == "cell_0" and "cell_1" not in ran  # the cells after the deepest requested one never run
    with pytest.raises(ValueError, match="is not computed here"):
        m.forward_intermediates(x, ["cell_9"])


def test_cell_ranges_chain_to_the_whole_trunk_and_hold_only_their_cells():
    m = nz.build_nasnet(NASNET_A, cells_per_stack=2, num_conv_filters=8, num_classes=10,
                        skip_reduction_layer_input=True).eval()  # Large's wiring: it reads past the reduction
    x = torch.randn(2, 3, 64, 64)
    split = m.output_index("cell_2")  # the first cell after a reduction
    first, second = m.cell_range(0, split), m.cell_range(split)
    assert list(first.cells) + list(second.cells) == m.cell_names and second.stem is None
    assert first.cells["cell_0"] is m.cells["cell_0"]  # shared, not copied
    names = [info["name"] for info in m.output_info()]
    assert [names[i] for i in second.seeds] == ["cell_0", "reduction_cell_0"]
    with torch.no_grad():
        outputs = first.forward_intermediates(x, list(second.seeds), intermediates_only=True)
        torch.testing.assert_close(second(outputs), m.forward_features(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pass 2 tensors in that order"):
        second(outputs[:1])
    with pytest.raises(ValueError, match="not all in the trunk given"):
        second.cell_range(0, split + 1)
