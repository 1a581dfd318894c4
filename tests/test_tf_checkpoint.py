"""The TF V2 checkpoint reader (no TensorFlow) on checkpoints TensorFlow itself wrote.

Two real checkpoints: ``../shared/fixtures/tf-slim/nasnet-a_mobile_tf_random_ckpt.tar.gz`` (19.8 MB, written by
TensorFlow 2.21 from the full fixture's variables and packed like Google's archives; CI has it), and, so that a
clone without ``../shared`` still reads a real one, the same checkpoint's ``.index`` as TensorFlow wrote it
(``tests/fixtures/tf_slim/nasnet_a_mobile_ckpt.index``, 49 KB). Its ``.data`` file is rebuilt from the compact
oracle's redrawn variables at the offsets the index gives; the rebuilt file must have the sha256 of the one
TensorFlow wrote, which holds only if every parsed name, dtype, shape, offset and size is right.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nasnet_zoo
from nasnet_zoo.convert.files import UnreadableWeightsError, extract_archive, read_weights_file
from nasnet_zoo.convert.tf_checkpoint import CheckpointFormatError, TFCheckpoint
from tf_oracle import FIXTURE_DIR

ARCHIVE = "nasnet-a_mobile_tf_random_ckpt.tar.gz"
SHIPPED_INDEX = FIXTURE_DIR / "nasnet_a_mobile_ckpt.index"
TF_DATA_SHA256 = "bb33d4a4ce17d8c06e200d136b788e89ff60e81810095999dc955b2ccec1ab3f"  # model.ckpt.data-00000-of-00001
DATA = "model.ckpt.data-00000-of-00001"


def logits(model: torch.nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.fixture(scope="module")
def rebuilt_checkpoint(tf_mobile, tmp_path_factory) -> Path:
    """The shipped TF-written index plus its data file rebuilt from the redrawn variables; returns the prefix."""
    folder = tmp_path_factory.mktemp("ckpt")
    prefix = folder / "model.ckpt"
    shutil.copyfile(SHIPPED_INDEX, f"{prefix}.index")
    checkpoint = TFCheckpoint(prefix)
    end = max(e.offset + e.size for e in checkpoint.entries.values())
    data = bytearray(end)
    for name, entry in checkpoint.entries.items():
        value = tf_mobile.variables[f"var/{name}"]
        assert value.shape == entry.shape and entry.dtype_name == "float32", name
        data[entry.offset:entry.offset + entry.size] = value.astype("<f4").tobytes()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    return prefix


def test_shipped_index_parses_into_the_data_file_tensorflow_wrote(rebuilt_checkpoint, tf_mobile) -> None:
    checkpoint = TFCheckpoint(rebuilt_checkpoint)
    assert checkpoint.num_shards == 1 and len(checkpoint.names) == 1126
    assert {f"var/{n}" for n in checkpoint.names} == set(tf_mobile.variables)
    data = Path(f"{rebuilt_checkpoint}.data-00000-of-00001").read_bytes()
    assert hashlib.sha256(data).hexdigest() == TF_DATA_SHA256  # every offset and size as TensorFlow laid them out


def test_rebuilt_archive_loads_through_create_model(rebuilt_checkpoint, tf_mobile, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NASNET_ZOO_HOME", str(tmp_path / "cache"))
    archive = tmp_path / "nasnet-a_mobile_rebuilt.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for suffix in (".index", ".data-00000-of-00001"):
            tar.add(f"{rebuilt_checkpoint}{suffix}", arcname=f"model.ckpt{suffix}")
    model = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=1001, pretrained=str(archive))
    assert np.abs(logits(model, tf_mobile.images) - tf_mobile.logits).max() < 1e-5


def test_tensorflow_archive_every_variable_bit_for_bit(tf_fixtures, tmp_path) -> None:
    prefix = extract_archive(tf_fixtures / ARCHIVE, tmp_path)
    checkpoint = TFCheckpoint(prefix)
    with np.load(tf_fixtures / "nasnet_a_mobile_tf_random.npz") as npz:
        expected = {k.removeprefix("var/"): npz[k] for k in npz.files if k.startswith("var/")}
    assert sorted(expected) == checkpoint.names
    for name in checkpoint.names:
        got = checkpoint.read(name)
        assert got.dtype == expected[name].dtype == np.float32 and got.shape == expected[name].shape, name
        assert got.tobytes() == expected[name].tobytes(), name


@pytest.fixture
def read_only_archive(tf_fixtures, tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    shutil.copyfile(tf_fixtures / ARCHIVE, folder / ARCHIVE)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder / ARCHIVE
    folder.chmod(stat.S_IRWXU)


def test_tensorflow_archive_through_create_model(read_only_archive, tf_fixtures, tmp_path, monkeypatch) -> None:
    """The archive by path, in a read-only folder: unpacked into the cache once, nothing written beside it
    (as root the folder stays writable, so the listing of the folder is what proves it)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NASNET_ZOO_HOME", str(cache))
    with np.load(tf_fixtures / "nasnet_a_mobile_tf_random.npz") as npz:
        images, tf_logits = npz["input"], npz["logits"]
    model = nasnet_zoo.create_model("nasnet_a_mobile", num_classes=1001, pretrained=str(read_only_archive))
    assert np.abs(logits(model, images) - tf_logits).max() < 1e-5
    assert os.listdir(read_only_archive.parent) == [ARCHIVE]
    (extracted,) = (cache / "extracted").iterdir()
    assert sorted(os.listdir(extracted)) == [DATA, "model.ckpt.index"]
    stamp = extracted.stat().st_mtime_ns
    model = nasnet_zoo.create_model("nasnet_a_mobile", pretrained=str(read_only_archive))  # 1000 classes
    assert np.abs(logits(model, images) - tf_logits[:, 1:]).max() < 1e-5
    assert extracted.stat().st_mtime_ns == stamp and len(os.listdir(cache / "extracted")) == 1


def test_archive_without_a_cache_leaves_nothing(tf_fixtures, tmp_path, monkeypatch) -> None:
    """read_weights_file without an extract_dir (tools, tests) unpacks into a temporary folder and removes it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    state, source, _ = read_weights_file(tf_fixtures / ARCHIVE)
    assert source == "tf" and len(state) == 1126
    assert list(tmp_path.iterdir()) == []


# ---- damaged and unsupported checkpoints (copies of the real index) ---------------------------------------
def test_unsupported_dtype_and_slices_are_named(rebuilt_checkpoint, tmp_path) -> None:
    index = bytearray(SHIPPED_INDEX.read_bytes())
    first = TFCheckpoint(rebuilt_checkpoint).names[0]  # the table's first key: its entry starts the first block
    at = index.index(first.encode()) + len(first)
    assert index[at:at + 2] == b"\x08\x01"  # BundleEntryProto field 1 (dtype) = DT_FLOAT
    index[at + 1] = 7  # DT_STRING
    prefix = tmp_path / "model.ckpt"
    Path(f"{prefix}.index").write_bytes(bytes(index))
    shutil.copyfile(f"{rebuilt_checkpoint}.data-00000-of-00001", f"{prefix}.data-00000-of-00001")
    checkpoint = TFCheckpoint(prefix)
    with pytest.raises(ValueError, match=rf"variable '{first}' has dtype string; this reader reads numeric"):
        checkpoint.read(first)
    other = checkpoint.names[1]
    checkpoint.entries[other] = dataclasses.replace(checkpoint.entries[other], num_slices=2)
    with pytest.raises(ValueError, match=r"stored in 2 slices \(a partitioned variable\).*re-save it unpartitioned"):
        checkpoint.read(other)


def test_truncated_files_fail_with_path_and_fix(rebuilt_checkpoint, tmp_path) -> None:
    prefix = tmp_path / "model.ckpt"
    shutil.copyfile(SHIPPED_INDEX, f"{prefix}.index")
    data = Path(f"{rebuilt_checkpoint}.data-00000-of-00001").read_bytes()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableWeightsError, match=rf"{prefix} is not a readable TF checkpoint .*truncated.*"
                                                     "delete it and get the file again"):
        read_weights_file(prefix)
    Path(f"{prefix}.index").write_bytes(SHIPPED_INDEX.read_bytes()[:-100])
    with pytest.raises(CheckpointFormatError, match="not a TF checkpoint index"):
        TFCheckpoint(prefix)
    Path(f"{prefix}.data-00000-of-00001").unlink()
    shutil.copyfile(SHIPPED_INDEX, f"{prefix}.index")
    with pytest.raises(FileNotFoundError, match="data shard 0 of 1 is missing"):
        TFCheckpoint(prefix).read(TFCheckpoint(prefix).names[0])
