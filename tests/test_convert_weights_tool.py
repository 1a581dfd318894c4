"""tools/convert_weights.py on TF-slim's own variables (the oracle's .npz) and on the TF-written checkpoint archive
(no TensorFlow): our file reproduces TF's logits."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.utils.io import sha256_file

TOOL = Path(__file__).resolve().parents[1] / "tools" / "convert_weights.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("convert_weights", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tf_case(tf_mobile, tf_mobile_npz: Path) -> dict:
    """TF-slim's variables in the fixture's .npz format (redrawn from the compact oracle), its input and logits."""
    return {"path": tf_mobile_npz, "x": torch.from_numpy(tf_mobile.images.transpose(0, 3, 1, 2).copy()),
            "logits": tf_mobile.logits}


def run(tool, capsys, *argv: str) -> tuple[int, str, str]:
    rc = tool.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_npz_to_safetensors_drop_background_and_load_by_name(tool, tf_case, tmp_path, capsys, monkeypatch) -> None:
    out_file = tmp_path / "mobile.safetensors"
    rc, out, _ = run(tool, capsys, tf_case["path"], "--source", "tf", "--arch", "nasnet_a_mobile",
                     "--drop-background", "--output", out_file, "--tag", "tfslim_random")
    assert rc == 0
    entry = json.loads(out)
    assert entry["name"] == "nasnet_a_mobile.tfslim_random" and entry["num_classes"] == 1000
    assert entry["sha256"] == sha256_file(out_file) and entry["source"] == "ours"
    # The printed entry is a working manifest entry: load by name, through the cache (a file:// download).
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    monkeypatch.setenv("NASNET_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    monkeypatch.setenv("NASNET_ZOO_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NASNET_ZOO_OFFLINE", raising=False)
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained="tfslim_random").eval()
    with torch.no_grad():
        logits = model(tf_case["x"]).numpy()
    assert np.abs(logits - tf_case["logits"][:, 1:]).max() < 1e-5
    assert (tmp_path / "cache" / "mobile.safetensors").is_file()


def test_keep_background_guesses_source_and_arch(tool, tf_case, tmp_path, capsys) -> None:
    out_file = tmp_path / "mobile1001.safetensors"
    rc, out, _ = run(tool, capsys, tf_case["path"], "--output", out_file)
    assert rc == 0 and json.loads(out)["num_classes"] == 1001
    assert json.loads(out)["architecture"] == "nasnet_a_mobile"
    from safetensors.torch import load_file
    state = load_file(str(out_file))
    assert state["classifier.weight"].shape == (1001, 1056)
    assert not any(k.startswith("aux_head.") for k in state)  # nothing invented: TF's eval graph has no aux head


def test_clear_errors(tool, tf_case, tmp_path, capsys) -> None:
    rc, _, err = run(tool, capsys, tf_case["path"], "--arch", "nasnet_a_large", "--output", tmp_path / "x.safetensors")
    assert rc == 2 and "does not fit nasnet_a_large; it looks like nasnet_a_mobile weights" in err
    assert not (tmp_path / "x.safetensors").exists()
    rc, _, err = run(tool, capsys, tmp_path / "missing.tar.gz", "--output", tmp_path / "y.safetensors")
    assert rc == 2 and "does not exist" in err
    prefix = tmp_path / "ckpt" / "model.ckpt"
    prefix.parent.mkdir()
    Path(f"{prefix}.index").write_bytes(b"")
    rc, _, err = run(tool, capsys, prefix, "--output", tmp_path / "z.safetensors")
    assert rc == 2 and f"{prefix} is not a readable TF checkpoint" in err and "too short" in err


@pytest.mark.parametrize("form", ["archive", "prefix"])
def test_tf_checkpoint_without_tensorflow(tool, tf_fixtures, tmp_path, capsys, form) -> None:
    """The TF-written archive, or its extracted prefix: converted with the pure reader, the entry's sha256 computed."""
    archive = tf_fixtures / "nasnet-a_mobile_tf_random_ckpt.tar.gz"
    if form == "prefix":
        import tarfile
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / "ckpt", filter="data")
        given = tmp_path / "ckpt" / "model.ckpt"
    else:
        given = archive
    out_file = tmp_path / "mobile.safetensors"
    rc, out, _ = run(tool, capsys, given, "--drop-background", "--tag", "tf_in1k", "--output", out_file)
    assert rc == 0
    entry = json.loads(out)
    assert entry["name"] == "nasnet_a_mobile.tf_in1k" and entry["sha256"] == sha256_file(out_file)
    assert entry["num_classes"] == 1000 and entry["urls"] == [out_file.resolve().as_uri()]
    with np.load(tf_fixtures / "nasnet_a_mobile_tf_random.npz") as data:
        x, expected = torch.from_numpy(data["input"].transpose(0, 3, 1, 2).copy()), data["logits"][:, 1:]
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(out_file)).eval()
    with torch.no_grad():
        assert np.abs(model(x).numpy() - expected).max() < 1e-5
