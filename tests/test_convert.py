"""Cadene / timm NASNet-A state dicts convert to ours and give the same logits on real photos.

The references get random weights and random BN statistics, so every tensor of the mapping matters; the
comparison runs in eval mode on the TF-slim oracle's COCO photos (shipped in tests/fixtures) at the models'
default sizes, and each also shows that the wrong padding mode fails it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.convert import convert_state_dict, guess_source
from nasnet_zoo.testing import randomize_batchnorm

pretrainedmodels = pytest.importorskip("pretrainedmodels")
timm = pytest.importorskip("timm")
from pretrainedmodels.models import nasnet as cadene_large  # noqa: E402
from pretrainedmodels.models import nasnet_mobile as cadene_mobile  # noqa: E402

TOL = 1e-4


def photos(tf_mobile, size: int, count: int) -> torch.Tensor:
    """The TF-slim oracle's COCO photos (224x224, shipped in tests/fixtures), resized to ``size``, in [-1, 1]."""
    from PIL import Image
    arrays = [np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR), dtype=np.float32)
              for p in tf_mobile.pixels[:count]]
    return torch.from_numpy(np.stack(arrays) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def ours_from(state: dict, name: str, padding: str, num_classes: int = 1000) -> torch.nn.Module:
    model = nasnet_zoo.create_model(name, padding=padding, num_classes=num_classes).eval()
    result = model.load_state_dict(convert_state_dict(state, source="cadene"), strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith("aux_head.") for k in result.missing_keys), result.missing_keys  # the ports have no aux head
    return model


@torch.no_grad()
def test_cadene_mobile_matches_at_224(tf_mobile) -> None:
    ref = randomize_batchnorm(cadene_mobile.NASNetAMobile(num_classes=1001), seed=1)
    x = photos(tf_mobile, 224, 2)
    expected = ref(x)
    ours = ours_from(ref.state_dict(), "nasnet_a_mobile", "tf", num_classes=1001)
    assert (ours(x) - expected).abs().max().item() < TOL
    # The comparison sees padding mistakes: timm's padding moves these logits by ~1e-3.
    wrong = ours_from(ref.state_dict(), "nasnet_a_mobile", "timm", num_classes=1001)
    assert (wrong(x) - expected).abs().max().item() > 3 * TOL


@pytest.fixture(scope="module")
def large_refs() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Cadene and timm nasnetalarge carrying the same random weights (their module names are identical)."""
    cadene = randomize_batchnorm(cadene_large.NASNetALarge(num_classes=1000), seed=2)
    timm_model = timm.create_model("nasnetalarge", pretrained=False).eval()
    timm_model.load_state_dict(cadene.state_dict())
    return cadene, timm_model


@torch.no_grad()
@pytest.mark.parametrize("port, padding", [("cadene", "tf"), ("timm", "timm")])
def test_large_matches_port_at_331(large_refs, tf_mobile, port: str, padding: str) -> None:
    cadene, timm_model = large_refs
    ref = cadene if port == "cadene" else timm_model
    x = photos(tf_mobile, 331, 1)
    expected = ref(x)
    ours = ours_from(ref.state_dict(), "nasnet_a_large", padding)
    assert (ours(x) - expected).abs().max().item() < TOL
    # The comparison sees padding mistakes: the other padding mode moves these logits well past the tolerance.
    wrong = ours_from(ref.state_dict(), "nasnet_a_large", "timm" if padding == "tf" else "tf")
    assert (wrong(x) - expected).abs().max().item() > 3 * TOL


def test_convert_api_errors() -> None:
    sd = {"cell_stem_0.conv_1x1.conv.weight": torch.zeros(1), "mystery.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match="mystery.weight"):
        convert_state_dict(sd, source="cadene")
    with pytest.raises(ValueError, match="unknown weight source 'keras'"):
        convert_state_dict(sd, source="keras")
    with pytest.raises(TypeError, match="takes no options"):
        convert_state_dict(sd, source="timm", drop_background=True)
    assert guess_source(sd) == "cadene"
    assert guess_source({"module.cells.cell_0.pre0.conv.weight": torch.zeros(1)}) == "ours"
    with pytest.raises(ValueError, match="pass source= explicitly"):
        guess_source({"fc.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="fc.weight.*expects the state dict of Cadene pretrainedmodels"):
        convert_state_dict({"fc.weight": torch.zeros(1)}, source="cadene")  # a foreign (ResNet-like) state dict
    with pytest.raises(ValueError, match="empty state dict; expected TF-slim NASNet-A variables"):
        convert_state_dict({}, source="tf")
    with pytest.raises(ValueError, match="already in nasnet_zoo's layout"):
        convert_state_dict({"cells.cell_0.pre0.conv.weight": torch.zeros(1)}, source="timm")


def test_cadene_mobile_cell_renumbering() -> None:
    """Cadene mobile numbers its normal cells 0-3, 6-9, 12-15; TF (and we) 0-11."""
    sd = cadene_mobile.NASNetAMobile(num_classes=1000).state_dict()
    ours = nasnet_zoo.create_model("nasnet_a_mobile").state_dict()
    converted = convert_state_dict(sd, source="cadene")
    wanted = {k for k in ours if not k.startswith("aux_head.") and not k.endswith("num_batches_tracked")}
    assert set(converted) == wanted
    assert torch.equal(converted["cells.cell_4.pre0.conv.weight"], sd["cell_6.conv_1x1.conv.weight"])
    assert torch.equal(converted["cells.cell_11.blocks.0.left.layers.1.bn.running_var"],
                       sd["cell_15.comb_iter_0_left.bn_sep_2.running_var"])
