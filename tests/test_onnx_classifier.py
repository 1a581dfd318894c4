"""ONNX export of classifiers: the CLI, parity with PyTorch, OnnxClassifier, providers and bad input.

One small NASNet-A (CIFAR config, 1 cell per stack) is exported once through tools/export_onnx.py; its
BatchNorm statistics are taken from real images first so that logits are O(1) and parity means something.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import nasnet_zoo
from nasnet_zoo.cli import export_onnx as cli
from nasnet_zoo.onnx import (ClassifierGraph, OnnxClassifier, OnnxModelError, OnnxRuntimeSetupError,
                             builtin_classifier_cases, check_runtime_install, choose_providers, load_image,
                             providers_for_device, run_classifier_parity)
from nasnet_zoo.onnx.parity import synthetic_image

pytestmark = pytest.mark.usefixtures("one_thread")


def small_calibrated_cifar_model() -> nasnet_zoo.NASNet:
    """NASNet-A CIFAR with 1 cell per stack; BN statistics from a batch of images, as after training."""
    torch.manual_seed(0)
    model = nasnet_zoo.create_model("nasnet_a_cifar", cells_per_stack=1, num_conv_filters=8, bn_momentum=1.0)
    images = torch.from_numpy(np.stack([synthetic_image(32, 32, seed=s) for s in range(16)]))
    graph = ClassifierGraph(model, (32, 32), model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    model.train()
    with torch.no_grad():
        model(graph.preprocess(images))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("onnx_cls")
    model = small_calibrated_cifar_model()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "create_model", lambda name, pretrained=False: model)  # the one builder, factory.create_model
        photo = out / "photo.png"
        Image.fromarray(synthetic_image(120, 90, seed=42)).save(photo)
        rc = cli.main(["--model", "nasnet_a_cifar", "--output", str(out / "cls.onnx"), "--verify", str(photo),
                       "--benchmark", "1", "--report", str(out / "report.json")])
    return {"rc": rc, "path": out / "cls.onnx", "report": json.loads((out / "report.json").read_text()),
            "model": model, "dir": out}


def reference(model: nasnet_zoo.NASNet):
    cfg = model.pretrained_cfg
    graph = ClassifierGraph(model, (32, 32), cfg["mean"], cfg["std"]).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.from_numpy(batch)).numpy()
    return run


def test_cli_exports_verifies_and_benchmarks(exported: dict) -> None:
    report = exported["report"]
    assert exported["rc"] == 0
    assert report["parity"]["ok"] and len(report["parity"]["cases"]) == 6  # the given image + 5 built-in cases
    assert all(c["max |diff|"] <= 1e-4 for c in report["parity"]["cases"])
    speed = report["speed"]
    assert (speed["runs"], speed["inputs"]) == (1, 1)  # --benchmark 1 over the one --verify photo
    assert speed["speedup"] == pytest.approx(speed["pytorch_eager_ms"] / speed["onnxruntime_ms"])
    assert report["providers"] == ["CPUExecutionProvider"]


def test_benchmark_reports_milliseconds_per_input() -> None:
    calls = []

    def takes_50_ms(x: str) -> None:
        calls.append(x)
        time.sleep(0.05)
    ms = cli.mean_ms(takes_50_ms, ["a", "b"], runs=2)
    assert calls == ["a", "b"] * 3  # one warm-up pass, then two timed passes
    assert 50.0 <= ms < 100.0       # per input (the 4 timed calls together take over 200 ms)


def test_file_metadata_and_checker(exported: dict) -> None:
    model = onnx.load(str(exported["path"]))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["nasnet_zoo.model_name"] == "nasnet_a_cifar"
    assert meta["nasnet_zoo.version"] == nasnet_zoo.__version__
    assert json.loads(meta["nasnet_zoo.class_names"])[3] == "cat"
    spec = json.loads(meta["nasnet_zoo.input_spec"])
    assert spec["dtype"] == "uint8" and spec["shape"] == ["batch", "height", "width", 3]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and isinstance(dims[1], str) and isinstance(dims[2], str) and dims[3] == 3


def test_parity_on_real_images(exported: dict, cifar_or_digits: Path, tf_mobile, tmp_path: Path) -> None:
    """A CIFAR-layout test batch (CIFAR-10, or digit scans in a clone) and two COCO photos (the TF oracle's)."""
    from nasnet_zoo.data.cifar import load_cifar10
    images, _ = load_cifar10(cifar_or_digits, "test")
    cifar_batch = np.ascontiguousarray(images[:16].transpose(0, 2, 3, 1))
    photos = []
    for i, pixels in enumerate(tf_mobile.pixels):
        photos.append(tmp_path / f"coco_{i}.png")
        Image.fromarray(pixels).save(photos[-1])
    cases = [("cifar-layout test batch of 16", cifar_batch)] + [(p.name, load_image(p)[None]) for p in photos]
    runner = OnnxClassifier(exported["path"])
    ref = reference(exported["model"])
    report = run_classifier_parity(ref, runner.logits, cases)
    assert report.ok, report.table()
    assert ref(cifar_batch).std() > 0.1  # logits large enough for 1e-4 to be a real bound


def test_dynamic_batch_matches_single_images(exported: dict) -> None:
    runner = OnnxClassifier(exported["path"])
    batch = np.stack([synthetic_image(40, 56, seed=s) for s in range(3)])
    singles = np.concatenate([runner.logits(b[None]) for b in batch])
    np.testing.assert_allclose(runner.logits(batch), singles, atol=1e-5)


def test_classifier_accepts_paths_pil_and_arrays(exported: dict, tmp_path: Path) -> None:
    runner = OnnxClassifier(exported["path"])
    array = synthetic_image(50, 70, seed=7)
    Image.fromarray(array).save(tmp_path / "x.png")
    by_array = runner(array, topk=3)
    assert runner(tmp_path / "x.png", topk=3) == by_array == runner(Image.fromarray(array), topk=3)
    assert [r["name"] for r in by_array] == [runner.class_names[r["index"]] for r in by_array]
    probs = [r["probability"] for r in by_array]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    assert runner(array[:, :, 0], topk=1)[0]["name"] in runner.class_names  # greyscale is accepted
    assert runner.providers == ["CPUExecutionProvider"]


def test_parity_report_flags_a_mismatch(exported: dict) -> None:
    runner = OnnxClassifier(exported["path"])
    ref = reference(exported["model"])
    report = run_classifier_parity(lambda b: ref(b) + 1e-3, runner.logits, builtin_classifier_cases((32, 32))[:2])
    assert not report.ok and "MISMATCH" in report.table() and "FAIL (2 of 2" in report.table()


def test_bad_images_are_explained(exported: dict, tmp_path: Path) -> None:
    runner = OnnxClassifier(exported["path"])
    with pytest.raises(TypeError, match="dtype float32"):
        runner(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="channels first"):
        runner(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(TypeError, match="unsupported image type"):
        runner(torch.zeros(32, 32, 3, dtype=torch.uint8))
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        runner(tmp_path / "notes.jpg")


def test_corrupt_truncated_and_foreign_files(exported: dict, tmp_path: Path) -> None:
    data = exported["path"].read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01not a protobuf" * 50)
    for name in ("truncated.onnx", "garbage.onnx"):
        with pytest.raises(OnnxModelError, match="truncated or corrupt"):
            OnnxClassifier(tmp_path / name)
    with pytest.raises(OnnxModelError, match="does not exist"):
        OnnxClassifier(tmp_path / "missing.onnx")
    foreign = onnx.load(str(exported["path"]))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(OnnxModelError, match="not exported by nasnet-zoo"):
        OnnxClassifier(tmp_path / "foreign.onnx")
    from nasnet_zoo.onnx import OnnxDetector
    with pytest.raises(OnnxModelError, match="is a classification model, expected a detection model"):
        OnnxDetector(exported["path"])


def test_cli_reports_bad_weights_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli.main(["--model", "nasnet_a_cifar", "--pretrained", str(tmp_path / "missing.safetensors"),
                   "--output", str(tmp_path / "x.onnx")])
    assert rc == 2 and "missing.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_provider_choice() -> None:
    assert choose_providers(available=["CUDAExecutionProvider", "CPUExecutionProvider"]) == \
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(available=["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(OnnxRuntimeSetupError, match=r"nasnet-zoo\[gpu\]"):
        choose_providers(["CUDAExecutionProvider"], available=["CPUExecutionProvider"])
    assert providers_for_device("cuda:1") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for_device("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="'mps'"):
        providers_for_device("mps")


def test_cuda_fallback_is_reported(exported: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu without a usable GPU lists CUDA but runs on CPU: the session opener says so."""
    import types

    import onnxruntime

    import nasnet_zoo.onnx.session as session_module

    def gpu_wheel_without_gpu(path, options, providers):  # what onnxruntime-gpu does on a machine without CUDA
        cpu_only = [p for p in providers if p != "CUDAExecutionProvider"]
        return onnxruntime.InferenceSession(path, options, providers=cpu_only)
    fake = types.SimpleNamespace(
        SessionOptions=onnxruntime.SessionOptions, GraphOptimizationLevel=onnxruntime.GraphOptimizationLevel,
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        InferenceSession=gpu_wheel_without_gpu)
    monkeypatch.setattr(session_module, "_import_ort", lambda: fake)
    fallback = r"asked for \['CUDAExecutionProvider'\] but runs on \['CPUExecutionProvider'\]"
    with pytest.warns(RuntimeWarning, match=fallback):
        runner = OnnxClassifier(exported["path"])
    assert runner.providers == ["CPUExecutionProvider"]


def test_both_runtimes_installed_is_explained() -> None:
    with pytest.warns(RuntimeWarning, match="both onnxruntime and onnxruntime-gpu are installed"):
        check_runtime_install(["onnxruntime", "onnxruntime-gpu"])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_runtime_install(["onnxruntime"])
