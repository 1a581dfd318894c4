"""The one NASNet builder: a name or a genotype plus sizes, whoever asks (trainer, detectors, search children)."""
from __future__ import annotations


import pytest
import torch

import nasnet_zoo
from nasnet_zoo import NASNET_A, build_nasnet, create_model, factory
from nasnet_zoo.detection import build_detector
from nasnet_zoo.models.nasnet_a import CONFIGS
from nasnet_zoo.search.child import ChildConfig, build_child
from nasnet_zoo.training.config import ModelSettings
from nasnet_zoo.training.model import build_model

SMALL = dict(cells_per_stack=1, num_conv_filters=4)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_a_genotype_builds_the_same_network_as_its_registered_name():
    torch.manual_seed(0)
    by_name = create_model("nasnet_a_cifar", **SMALL)
    torch.manual_seed(0)
    by_genotype = create_model(NASNET_A, **{**CONFIGS["nasnet_a_cifar"]["arch"], **SMALL})
    assert by_genotype.config == by_name.config
    _same_weights(by_name, by_genotype)
    torch.manual_seed(0)
    _same_weights(by_genotype, build_nasnet(NASNET_A, **{**CONFIGS["nasnet_a_cifar"]["arch"], **SMALL}))


def test_sizes_have_one_name_for_names_and_genotypes():
    assert create_model("nasnet_a_mobile", penultimate_filters=528).config.num_conv_filters == 22
    g = create_model(NASNET_A, cells_per_stack=2, penultimate_filters=96, stem="cifar", num_classes=10)
    assert g.config.num_conv_filters == 4 and g.num_features == 96
    features = create_model(NASNET_A, cells_per_stack=1, num_conv_filters=4, features_only=True)
    assert features.feature_info.reduction() == [2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="exactly one of penultimate_filters"):
        create_model(NASNET_A, cells_per_stack=1)
    with pytest.raises(ValueError, match="published weights are for registered names"):
        create_model(NASNET_A, pretrained=True, **SMALL)


def test_every_builder_site_goes_through_create_model(monkeypatch, tmp_path):
    """The trainer, both detector designs and the search child build their genotype networks in one place."""
    built = []

    def spy(genotype, **settings):
        built.append(settings)
        return build_nasnet(genotype, **settings)
    monkeypatch.setattr(factory, "build_nasnet", spy)
    build_child(NASNET_A, ChildConfig(num_conv_filters=4, cells=1), 10)
    (tmp_path / "cell.json").write_text(NASNET_A.to_json())
    build_model(ModelSettings(genotype=str(tmp_path / "cell.json"), cells_per_stack=1, num_conv_filters=4), num_classes=10)
    build_detector("fasterrcnn_nasnet_fpn", num_classes=3, backbone_args=SMALL, min_size=64, max_size=64)
    build_detector("fasterrcnn_nasnet_c4", num_classes=3, backbone_args=SMALL, min_size=64, max_size=64)
    assert [s["num_conv_filters"] for s in built] == [4, 4, 4, 4]
    assert built[0]["stem"] == "cifar" and built[1]["num_classes"] == 10 and built[2]["num_classes"] == 0


def test_identity_schemas_live_with_their_models():
    from nasnet_zoo.detection.modeling.builders import detector_identity
    from nasnet_zoo.nasnet import nasnet_identity
    from nasnet_zoo.utils import checkpoint
    assert nasnet_identity(create_model("nasnet_a_cifar", **SMALL))["num_conv_filters"] == 4
    assert detector_identity("d", 3, [1, 2]) == {"model_name": "d", "num_classes": 3, "categories": [1, 2]}
    assert not hasattr(checkpoint, "nasnet_identity") and not hasattr(checkpoint, "detector_identity")
    assert not hasattr(nasnet_zoo.genotypes, "GENOTYPES") and not hasattr(nasnet_zoo.NASNetTrunk, "cell_info")
