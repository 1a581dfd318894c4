"""Pretrained weights by name, with local files standing in for the published ones.

Reference models with random weights are saved under cache names; a temporary manifest
(``NASNET_ZOO_MANIFEST``) carries their real sha256. Downloads go through ``torch.hub`` from ``file://`` URLs,
the closest thing to the published URLs offline.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

import nasnet_zoo
from nasnet_zoo import hub
from nasnet_zoo.convert.files import save_safetensors

pretrainedmodels = pytest.importorskip("pretrainedmodels")
from pretrainedmodels.models.nasnet_mobile import NASNetAMobile  # noqa: E402

INPUT = {"input_size": [3, 224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 0.875,
         "interpolation": "bilinear"}


def entry(name: str, url: str, sha256: str | None, *, source: str = "cadene", file_format: str = "pth",
          num_classes: int = 1000, padding: str = "tf", default: bool = False) -> dict:
    return {"name": name, "architecture": name.split(".")[0], "url": url, "sha256": sha256, "source": source,
            "file_format": file_format, "num_classes": num_classes, "dataset": "imagenet-1k",
            "metrics": {"top1": 1.0, "top5": 2.0}, "license": "test", "input": INPUT, "padding": padding,
            "default": default}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Cadene mobile (1001 classes, random weights) saved as a .pth, with its logits on one input."""
    torch.manual_seed(0)
    ref = NASNetAMobile(num_classes=1001).eval()
    folder = tmp_path_factory.mktemp("published")
    path = folder / "nasnetamobile-test.pth"
    torch.save(ref.state_dict(), path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        logits = ref(x)
    return {"path": path, "sha256": sha256(path), "x": x, "logits": logits}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("NASNET_ZOO_HOME", str(cache))
    monkeypatch.setenv("NASNET_ZOO_OFFLINE", "1")
    return cache


def use_manifest(tmp_path: Path, monkeypatch, *entries: dict) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": 1, "weights": list(entries)}))
    monkeypatch.setenv("NASNET_ZOO_MANIFEST", str(path))


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_default_weights_from_cache_with_hash_prefix(reference, home, tmp_path, monkeypatch) -> None:
    """pretrained=True takes the default entry; the 1001-class head loses its background class."""
    home.mkdir()
    (home / "nasnetamobile-test.pth").write_bytes(reference["path"].read_bytes())
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.tf_in1k", "http://example.invalid/nasnetamobile-test.pth",
                                              reference["sha256"][:8], num_classes=1001, default=True))
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=True)
    assert (logits(model, reference["x"]) - reference["logits"][:, 1:]).abs().max() < 1e-5
    assert model.pretrained_cfg["tag"] == "nasnet_a_mobile.tf_in1k"
    assert model.pretrained_cfg["metrics"] == {"top1": 1.0, "top5": 2.0}
    assert model.pretrained_cfg["num_classes"] == 1000


def test_download_through_torch_hub_checks_the_hash(reference, home, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NASNET_ZOO_OFFLINE")
    url = reference["path"].as_uri()
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.good", url, reference["sha256"], num_classes=1001),
                 entry("nasnet_a_mobile.bad", url, "0" * 64, num_classes=1001))
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained="good", num_classes=1001)
    assert (logits(model, reference["x"]) - reference["logits"]).abs().max() < 1e-5
    assert (home / "nasnetamobile-test.pth").is_file()
    (home / "nasnetamobile-test.pth").unlink()
    with pytest.raises(ValueError, match="hash mismatch") as err:
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="nasnet_a_mobile.bad")
    assert not (home / "nasnetamobile-test.pth").exists()  # a bad download never lands in the cache
    assert url in str(err.value) and "0" * 64 in str(err.value)


def test_hash_mismatch_in_cache_names_url_hash_and_path(reference, home, tmp_path, monkeypatch) -> None:
    home.mkdir()
    (home / "nasnetamobile-test.pth").write_bytes(b"not the published file")
    url = "http://example.invalid/nasnetamobile-test.pth"
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.x", url, reference["sha256"]))
    with pytest.raises(ValueError) as err:
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="nasnet_a_mobile.x")
    message = str(err.value)
    assert "hash mismatch" in message and url in message and reference["sha256"] in message
    assert str(home / "nasnetamobile-test.pth") in message


def test_offline_missing_file_names_url_hash_and_path(home) -> None:
    with pytest.raises(FileNotFoundError) as err:
        nasnet_zoo.create_model("nasnet_a_large", pretrained=True)
    message = str(err.value)
    assert "http://data.lip6.fr/cadene/pretrainedmodels/nasnetalarge-a1897284.pth" in message
    assert "a1897284" in message and str(home / "nasnetalarge-a1897284.pth") in message


def test_local_paths_and_class_count_mismatch(reference, home) -> None:
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(reference["path"]), num_classes=1001)
    assert (logits(model, reference["x"]) - reference["logits"]).abs().max() < 1e-5
    with pytest.warns(UserWarning, match="1001-class classifier and the model 10 classes"):
        fresh = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(reference["path"]), num_classes=10)
    with torch.no_grad():
        assert torch.equal(fresh.eval().forward_features(reference["x"]), model.eval().forward_features(reference["x"]))


def test_ours_safetensors_round_trip_and_architecture_errors(reference, home, tmp_path) -> None:
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(reference["path"]), num_classes=1001)
    ours = tmp_path / "mobile.safetensors"
    save_safetensors(model.state_dict(), ours, {"architecture": "nasnet_a_mobile", "num_classes": "1001"})
    again = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(ours), num_classes=1001)
    assert (logits(again, reference["x"]) - reference["logits"]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="holds weights for nasnet_a_mobile, not nasnet_a_cifar"):
        nasnet_zoo.create_model("nasnet_a_cifar", pretrained=str(ours))
    with pytest.raises(ValueError, match="does not fit nasnet_a_cifar; it looks like nasnet_a_mobile weights"):
        nasnet_zoo.create_model("nasnet_a_cifar", pretrained=str(reference["path"]))
    with pytest.raises(ValueError, match="are for nasnet_a_large, not nasnet_a_mobile"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="nasnet_a_large.tf_in1k")


def test_timm_weights_warn_about_padding(reference, home, tmp_path, monkeypatch) -> None:
    home.mkdir()
    (home / "nasnetamobile-test.pth").write_bytes(reference["path"].read_bytes())
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.t", "http://example.invalid/nasnetamobile-test.pth",
                                              reference["sha256"], source="timm", num_classes=1001, padding="timm"))
    with pytest.warns(UserWarning, match="padding='timm'"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="nasnet_a_mobile.t", num_classes=1001)
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained="nasnet_a_mobile.t", num_classes=1001,
                                    padding="timm")
    assert model.pretrained_cfg["padding"] == "timm"


def test_tf_checkpoint_archive_needs_tensorflow(home, tmp_path, monkeypatch) -> None:
    try:
        import tensorflow  # noqa: F401
        pytest.skip("TensorFlow is installed: the missing-TensorFlow message cannot be shown")
    except ImportError:
        pass
    home.mkdir()
    archive = home / "nasnet-a_mobile_test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member in ("model.ckpt.index", "model.ckpt.data-00000-of-00001"):
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"fake"))
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.slim", f"http://example.invalid/{archive.name}", None,
                                              source="tf", file_format="tf-checkpoint-archive", num_classes=1001))
    with pytest.raises(ImportError, match=r"needs TensorFlow: pip install 'nasnet-zoo\[tf\]'"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="slim")
    assert (home / "nasnet-a_mobile_test" / "model.ckpt.index").is_file()  # extracted once, beside the archive


def test_tf_slim_variables_load_by_path(tf_mobile, tf_mobile_npz, home) -> None:
    import numpy as np
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(tf_mobile_npz), num_classes=1001)
    x = torch.from_numpy(tf_mobile.images.transpose(0, 3, 1, 2).copy())
    assert np.abs(logits(model, x).numpy() - tf_mobile.logits).max() < 1e-5


def test_manifest_lists_the_published_weights(monkeypatch) -> None:
    monkeypatch.delenv("NASNET_ZOO_MANIFEST", raising=False)
    names = hub.list_weights()
    assert hub.weights_for_model("nasnet_a_mobile")[0] == "nasnet_a_mobile.tf_in1k"  # default first
    assert {"nasnet_a_mobile.tfslim_in1k", "nasnet_a_large.tfslim_in1k", "nasnet_a_large.timm_in1k"} <= set(names)
    assert nasnet_zoo.list_models(pretrained=True) == ["nasnet_a_large", "nasnet_a_mobile"]
    for name in names:
        w = hub.get_weights(name)
        assert w.url.startswith(("http://", "https://")) and w.metrics["top1"] > 70
    with pytest.raises(ValueError, match="did you mean"):
        hub.get_weights("tf_in1kk", "nasnet_a_mobile")


def test_bad_manifests_and_corrupt_archives(home, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NASNET_ZOO_MANIFEST", str(tmp_path / "nowhere.json"))
    with pytest.raises(FileNotFoundError, match="NASNET_ZOO_MANIFEST=.*nowhere.json is not a file"):
        hub.list_weights()
    broken = entry("nasnet_a_mobile.x", "http://example.invalid/a.pth", None)
    del broken["license"]
    use_manifest(tmp_path, monkeypatch, broken)
    with pytest.raises(ValueError, match=r"'nasnet_a_mobile.x' has missing fields \['license'\]"):
        hub.list_weights()
    home.mkdir()
    (home / "truncated.tar.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.slim", "http://example.invalid/truncated.tar.gz", None,
                                              source="tf", file_format="tf-checkpoint-archive", num_classes=1001))
    with pytest.raises(ValueError, match="not a readable .tar.gz archive .*download it again"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="slim")
