"""Pretrained weights by name, with local files standing in for the published ones.

Reference models with random weights are saved under cache names; a temporary manifest
(``NASNET_ZOO_MANIFEST``) carries their real sha256. Downloads go through ``torch.hub`` from ``file://`` URLs
and from a local HTTP server (for a connection cut halfway), the closest things to the published hosts offline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import logging
import tarfile
import threading
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


def entry(name: str, url: str | list[str], sha256: str | None, *, source: str = "cadene", file_format: str = "pth",
          num_classes: int = 1000, padding: str = "tf", default: bool = False) -> dict:
    data = {"name": name, "architecture": name.split(".")[0], "urls": [url] if isinstance(url, str) else url,
            "sha256": sha256, "source": source, "file_format": file_format, "num_classes": num_classes,
            "dataset": "imagenet-1k", "metrics": {"top1": 1.0, "top5": 2.0}, "license": "test", "input": INPUT,
            "padding": padding, "default": default}
    if not (sha256 and len(sha256) == 64):
        data["sha256_unavailable"] = "test entry"
    return data


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
    path.write_text(json.dumps({"format_version": 2, "weights": list(entries)}))
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
    default = hub.default_weights("nasnet_a_large")
    assert default.file_format == "tf-checkpoint-archive" and len(default.urls) >= 2
    assert all(url in message for url in default.urls) and "none published" in message
    assert str(home / "nasnet-a_large_04_10_2017.tar.gz") in message


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


def test_damaged_archive_in_the_cache_names_the_fix(home, tmp_path, monkeypatch) -> None:
    """An archive whose checkpoint is damaged: the error names the file, what it should be, and the URLs."""
    home.mkdir()
    archive = home / "nasnet-a_mobile_test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member in ("model.ckpt.index", "model.ckpt.data-00000-of-00001"):
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"fake"))
    url = f"http://example.invalid/{archive.name}"
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.slim", url, None, source="tf",
                                              file_format="tf-checkpoint-archive", num_classes=1001))
    with pytest.raises(ValueError, match=rf"{archive} is not a readable TF checkpoint .*too short.*delete it and "
                                         rf"download it again from {url}"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="slim")
    assert sorted(p.name for p in home.iterdir()) == ["extracted", archive.name]  # unpacked in the cache only


def test_tf_slim_variables_load_by_path(tf_mobile, tf_mobile_npz, home) -> None:
    import numpy as np
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(tf_mobile_npz), num_classes=1001)
    x = torch.from_numpy(tf_mobile.images.transpose(0, 3, 1, 2).copy())
    assert np.abs(logits(model, x).numpy() - tf_mobile.logits).max() < 1e-5


def test_manifest_lists_the_published_weights(monkeypatch) -> None:
    monkeypatch.delenv("NASNET_ZOO_MANIFEST", raising=False)
    names = hub.list_weights()
    for arch in ("nasnet_a_mobile", "nasnet_a_large"):
        default = hub.get_weights(hub.weights_for_model(arch)[0])  # default first: Google's TF-slim archive
        assert default.default and default.name == f"{arch}.tf_in1k" and default.source == "tf"
        assert all("download.tensorflow.org" in url for url in default.urls) and len(default.urls) == 2
    assert {"nasnet_a_mobile.cadene_in1k", "nasnet_a_large.cadene_in1k", "nasnet_a_large.timm_in1k"} <= set(names)
    assert len(hub.get_weights("nasnet_a_large.timm_in1k").urls) == 3  # GitHub release (two owners) + Hugging Face
    assert nasnet_zoo.list_models(pretrained=True) == ["nasnet_a_large", "nasnet_a_mobile"]
    for name in names:
        w = hub.get_weights(name)
        assert all(u.startswith(("http://", "https://")) for u in w.urls) and w.metrics["top1"] > 70
        assert w.has_full_hash or w.sha256_unavailable  # a hash, or the reason there is none
    with pytest.raises(ValueError, match="did you mean"):
        hub.get_weights("tf_in1kk", "nasnet_a_mobile")


def test_schema_requires_a_hash_or_a_reason_and_reads_version_1(tmp_path, monkeypatch) -> None:
    bare = entry("nasnet_a_mobile.x", "http://example.invalid/a.pth", "abcd1234")
    del bare["sha256_unavailable"]
    use_manifest(tmp_path, monkeypatch, bare)
    with pytest.raises(ValueError, match="no full sha256 .'abcd1234'. and no 'sha256_unavailable' reason"):
        hub.list_weights()
    legacy = {**entry("nasnet_a_mobile.old", "x://unused", "0" * 64), "url": "http://example.invalid/old.pth"}
    del legacy["urls"]
    use_manifest(tmp_path, monkeypatch, legacy)  # a format_version 1 entry (one "url"), as older runs wrote them
    assert hub.get_weights("nasnet_a_mobile.old").urls == ("http://example.invalid/old.pth",)
    made = hub.manifest_entry(architecture="nasnet_a_mobile", tag="t", urls=["file:///w.safetensors"], sha256="f" * 64,
                              source="ours", file_format="safetensors", num_classes=10, dataset="d", metrics={},
                              license="l", input_cfg={**INPUT, "notation": "ignored"}, padding="tf", notes="")
    assert made["input"] == INPUT and made["name"] == "nasnet_a_mobile.t"
    with pytest.raises(ValueError, match="no full sha256"):
        hub.manifest_entry(**{**dict(architecture="nasnet_a_mobile", tag="t", urls=["file:///w"], source="ours",
                                     file_format="safetensors", num_classes=10, dataset="d", metrics={}, license="l",
                                     input_cfg=INPUT, padding="tf", notes=""), "sha256": "f" * 8})


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


def test_corrupt_archive_download_without_hash_never_lands(home, tmp_path, monkeypatch) -> None:
    """No published hash: a download that is not a complete .tar.gz is rejected before it reaches the cache."""
    monkeypatch.delenv("NASNET_ZOO_OFFLINE")
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.ckpt.index")
        data = bytes(range(256)) * 4096
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    cut = tmp_path / "host" / "slim.tar.gz"
    cut.parent.mkdir()
    cut.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.slim", cut.as_uri(), None, source="tf",
                                              file_format="tf-checkpoint-archive", num_classes=1001))
    with pytest.raises(ValueError, match="not a complete tf-checkpoint-archive file"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="slim")
    assert not home.exists() or list(home.iterdir()) == []


def test_mirrors_are_tried_in_order(reference, home, tmp_path, monkeypatch, caplog) -> None:
    """A dead first host, a host serving another file, then the real one: the third is used, all hash-checked."""
    monkeypatch.delenv("NASNET_ZOO_OFFLINE")
    dead = (tmp_path / "gone" / "nasnetamobile-test.pth").as_uri()
    wrong = tmp_path / "other" / "nasnetamobile-test.pth"
    wrong.parent.mkdir()
    wrong.write_bytes(b"some other file")
    urls = [dead, wrong.as_uri(), reference["path"].as_uri()]
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.m", urls, reference["sha256"], num_classes=1001))
    with caplog.at_level(logging.WARNING, logger="nasnet_zoo.hub.download"):
        model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained="m", num_classes=1001)
    assert (logits(model, reference["x"]) - reference["logits"]).abs().max() < 1e-5
    assert dead in caplog.text and "hash mismatch" in caplog.text
    assert [p.name for p in home.iterdir()] == ["nasnetamobile-test.pth"]  # no temporary files left
    (home / "nasnetamobile-test.pth").unlink()
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.m", urls[:1], reference["sha256"], num_classes=1001))
    with pytest.raises(FileNotFoundError, match=f"could not download weights nasnet_a_mobile.m .{dead}"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="m", num_classes=1001)


class _HalfServer(http.server.BaseHTTPRequestHandler):
    """Announces the whole file, sends half of it, and drops the connection (a download cut halfway)."""

    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_download_cut_halfway_leaves_nothing(reference, home, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("NASNET_ZOO_OFFLINE")
    handler = type("Handler", (_HalfServer,), {"body": reference["path"].read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/nasnetamobile-test.pth"
        for sha in (reference["sha256"], None):  # with a hash, and with none published (the torch.hub stream)
            use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.h", url, sha, num_classes=1001))
            with pytest.raises((FileNotFoundError, ValueError), match=url):
                nasnet_zoo.create_model("nasnet_a_mobile", pretrained="h", num_classes=1001)
            assert not home.exists() or list(home.iterdir()) == []  # neither the file nor a temporary one
        use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.h", [url, reference["path"].as_uri()],
                                                  reference["sha256"], num_classes=1001))
        model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained="h", num_classes=1001)
        assert (logits(model, reference["x"]) - reference["logits"]).abs().max() < 1e-5
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("suffix, expected", [(".safetensors", "safetensors file"),
                                              (".pth", r"PyTorch state dict \(torch.save file\)"),
                                              (".npz", ".npz archive of TF variables")])
def test_corrupt_files_name_path_expectation_and_fix(reference, home, tmp_path, monkeypatch, suffix, expected) -> None:
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_safetensors({"stem.conv.weight": torch.zeros(32, 3, 3, 3)}, good, {})
    elif suffix == ".pth":
        good.write_bytes(reference["path"].read_bytes())
    else:
        import numpy as np
        np.savez(good, **{"var/conv0/weights": np.zeros((3, 3, 3, 32), np.float32)})
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=rf"{bad} is not a readable {expected} .*: delete it and get the file again"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(bad))
    home.mkdir(exist_ok=True)
    (home / bad.name).write_bytes(bad.read_bytes())
    url = f"http://example.invalid/{bad.name}"
    use_manifest(tmp_path, monkeypatch, entry("nasnet_a_mobile.c", url, None, source="ours" if suffix == ".safetensors"
                                              else "cadene" if suffix == ".pth" else "tf", file_format=suffix[1:]))
    with pytest.raises(ValueError, match=rf"{home / bad.name} is not a readable {expected} .*delete it and download "
                                         rf"it again from {url}"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained="c")


def test_foreign_state_dict_in_one_line(reference) -> None:
    """hub.load_state_dict converts and fits like pretrained=: the aux head the port lacks needs no aux_head=False."""
    model = nasnet_zoo.create_model("nasnet_a_mobile")  # 1000 classes, with the aux head
    assert model.aux_head is not None
    nasnet_zoo.hub.load_state_dict(model, torch.load(reference["path"], weights_only=True))
    assert (logits(model, reference["x"]) - reference["logits"][:, 1:]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="empty state dict; expected the state dict of Cadene"):
        nasnet_zoo.convert_state_dict({}, source="cadene")


def test_mismatch_message_identifies_cifar_and_searched_weights(tmp_path) -> None:
    cifar = tmp_path / "cifar.pth"
    torch.save(nasnet_zoo.create_model("nasnet_a_cifar").state_dict(), cifar)
    with pytest.raises(ValueError, match="does not fit nasnet_a_mobile; it looks like nasnet_a_cifar weights"):
        nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(cifar))
    genotype = nasnet_zoo.NASNET_A.to_dict()
    genotype["normal"]["blocks"][0]["ops"][0] = "sep_conv_3x3"  # 5x5 -> 3x3: another genotype, same layout
    searched = nasnet_zoo.NASNet(nasnet_zoo.Genotype.from_dict(genotype),
                                 dataclasses.replace(nasnet_zoo.create_model("nasnet_a_cifar").config))
    other = tmp_path / "searched.pth"
    torch.save(searched.state_dict(), other)
    with pytest.raises(ValueError, match="its layout .CIFAR stem, 96 stem channels, 18 normal cells. is "
                                         "nasnet_a_cifar's but its cells are not NASNet-A's"):
        nasnet_zoo.create_model("nasnet_a_cifar", pretrained=str(other))
    wide = nasnet_zoo.create_model("nasnet_a_cifar", num_conv_filters=16, cells_per_stack=2)
    custom = tmp_path / "custom.pth"
    torch.save(wide.state_dict(), custom)
    with pytest.raises(ValueError, match="matches no registered NASNet-A configuration, so it cannot tell"):
        nasnet_zoo.create_model("nasnet_a_cifar", pretrained=str(custom))
