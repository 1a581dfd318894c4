"""Parameters and mult-adds against the paper, and the ``python -m nasnet_zoo`` CLI that prints them."""
from __future__ import annotations

import json

import pytest
import torch

import nasnet_zoo
from nasnet_zoo.__main__ import main
from nasnet_zoo.profile import PAPER_COSTS, count_mult_adds, count_parameters, model_cost


def meta_model(name: str, **overrides) -> torch.nn.Module:
    """Parameters without memory, for counting parameters only."""
    with torch.device("meta"):
        return nasnet_zoo.create_model(name, **overrides)


@pytest.mark.parametrize("name", ["nasnet_a_mobile", "nasnet_a_large"])
def test_imagenet_models_match_the_paper_within_one_percent(name: str) -> None:
    cost = model_cost(meta_model(name))  # shapes alone decide both counts
    paper_params, paper_mult_adds = PAPER_COSTS[name]
    assert abs(cost.params - paper_params) / paper_params < 0.01
    assert abs(cost.mult_adds - paper_mult_adds) / paper_mult_adds < 0.01


def test_mobile_params_equal_tf_slim_trainable_variables() -> None:
    """TF-slim's own NASNet-A Mobile (1001 classes, no aux head at eval) has 5,291,035 trainable parameters."""
    assert count_parameters(meta_model("nasnet_a_mobile", num_classes=1001)) == 5_291_035


def test_cifar_params_round_to_the_papers_figure() -> None:
    """The paper prints 3.3M (two significant digits) for NASNet-A 6 @ 768."""
    params = count_parameters(meta_model("nasnet_a_cifar"))
    assert round(params / 1e6, 1) == PAPER_COSTS["nasnet_a_cifar"][0] / 1e6


def test_aux_head_is_excluded_unless_asked() -> None:
    model = meta_model("nasnet_a_cifar")
    aux = sum(p.numel() for p in model.aux_head.parameters())
    assert aux > 0
    assert count_parameters(model, include_aux=True) == count_parameters(model) + aux


def test_mult_adds_follow_the_counting_rule() -> None:
    """A conv, a depthwise conv and a linear layer: k*k*Cin/groups*Cout*H*W and in*out; pooling/BN/ReLU are free."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 10))
    expected = 3 * 3 * 3 * 8 * 10 * 10 + 5 * 5 * 8 * 10 * 10 + 8 * 5 * 5 * 10
    assert count_mult_adds(model, (3, 10, 10)) == expected


def test_mult_adds_scale_with_area_and_leave_the_model_untouched() -> None:
    model = nasnet_zoo.build_nasnet(nasnet_zoo.NASNET_A, cells_per_stack=1, num_conv_filters=8, stem="cifar").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert 3.9 < count_mult_adds(model, (3, 64, 64)) / count_mult_adds(model, (3, 32, 32)) < 4.1
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_cost_needs_a_size_for_bare_modules() -> None:
    with pytest.raises(ValueError, match="pass input_size"):
        model_cost(torch.nn.Linear(2, 2))


def test_cli_info_prints_counts_levels_and_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "nasnet_a_mobile"]) == 0
    out = capsys.readouterr().out
    assert "params (without aux head): 5,289,978  (paper 5.30M, -0.19%)" in out
    assert "mult-adds at 224x224: 563,638,816  (paper 564.00M, -0.06%)" in out
    assert "stride 32: 1056 channels" in out
    assert "nasnet_a_mobile.tf_in1k" in out


def test_cli_info_json_at_another_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "nasnet_a_cifar", "--image-size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == [3, 64, 64] and info["paper"] is None
    assert [lvl["stride"] for lvl in info["feature_levels"]] == [1, 2, 4]


def test_cli_list_and_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "nasnet_a_*"]) == 0
    assert capsys.readouterr().out.split() == ["nasnet_a_cifar", "nasnet_a_large", "nasnet_a_mobile"]
    assert main(["info", "nasnet_a_mobil"]) == 2
    assert "did you mean nasnet_a_mobile" in capsys.readouterr().err
