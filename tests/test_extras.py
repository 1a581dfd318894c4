"""Optional dependencies: each feature whose extra is missing stops at its first use with one line naming the
extra, the programs print it without a traceback, and ``import nasnet_zoo`` needs none of them.

A missing package is simulated the way ``import`` sees one: ``None`` in ``sys.modules`` for the package and
every submodule already imported. ``tests/test_wheel.py`` checks the real thing: the base wheel in a fresh venv.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from PIL import Image

from nasnet_zoo.utils.extras import MissingExtra, exits_on_missing_extra, require

REPO = Path(__file__).resolve().parents[1]
#: The top-level modules of the optional dependencies (pyproject.toml's extras).
EXTRA_MODULES = ("matplotlib", "pycocotools", "sklearn", "tensorboard", "onnx", "onnxruntime", "onnxscript", "ray")


def hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import PACKAGE`` (and its submodules) fail with ModuleNotFoundError for this test."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.setitem(sys.modules, name, None)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def one_line_naming(err: BaseException, extra: str) -> str:
    text = str(err)
    assert "\n" not in text and f"'{extra}' extra" in text and f"pip install 'nasnet-zoo[{extra}]'" in text, text
    return text


@pytest.fixture()
def tiny_coco(tmp_path: Path) -> Path:
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "1.png")
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 48, "height": 40}],
        "categories": [{"id": 5, "name": "box"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [4, 4, 20, 16], "iscrowd": 0,
                         "area": 320}]}))
    return tmp_path


def test_require_returns_the_module_or_one_line_without_a_chained_traceback(monkeypatch) -> None:
    assert require("json", extra="x", feature="y") is json
    hide(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtra) as caught:
        require("matplotlib.figure", extra="viz", feature="Drawing cells")
    text = one_line_naming(caught.value, "viz")
    assert text.startswith("Drawing cells needs the 'viz' extra") and "matplotlib" in text
    assert isinstance(caught.value, ImportError) and caught.value.extra == "viz"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_import_error_inside_an_installed_package_is_not_disguised(tmp_path: Path, monkeypatch) -> None:
    """A package that is there but broken (it imports something missing) is a real fault, not a missing extra."""
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        require("broken_pkg", extra="viz", feature="x")
    assert not isinstance(caught.value, MissingExtra) and caught.value.name == "no_such_module_anywhere"


def test_programs_print_the_line_and_exit_2(capsys) -> None:
    @exits_on_missing_extra
    def program(argv: list[str]) -> int:
        require("no_such_package_for_sure", extra="detection", feature="COCO evaluation")
        return 0

    assert program([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: COCO evaluation needs the 'detection' extra")


def test_import_and_the_model_api_load_no_extra() -> None:
    """``import nasnet_zoo``, create_model, forward_intermediates, optimize_for_inference and the CLI module
    import none of the optional packages (a fresh process: this one has them all loaded)."""
    code = ("import sys, torch, nasnet_zoo, nasnet_zoo.__main__, nasnet_zoo.hub, nasnet_zoo.detection, "
            "nasnet_zoo.onnx, nasnet_zoo.visualize, nasnet_zoo.cli.train_det, nasnet_zoo.cli.predict_det, "
            "nasnet_zoo.cli.export_onnx\n"
            "m = nasnet_zoo.create_model('nasnet_a_cifar', cells_per_stack=1, num_classes=3).eval()\n"
            "x = torch.randn(1, 3, 32, 32)\n"
            "with torch.no_grad():\n"
            "    m.forward_intermediates(x, indices=2); nasnet_zoo.optimize_for_inference(m)(x)\n"
            f"print([n for n in {EXTRA_MODULES!r} if n in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_every_extra_named_in_the_code_is_defined_and_the_base_is_small() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    named = set()
    for path in (REPO / "src" / "nasnet_zoo").rglob("*.py"):
        named |= set(re.findall(r"""extra=["']([a-z0-9_-]+)["']""", path.read_text(encoding="utf-8")))
    assert named and named <= set(extras), named - set(extras)
    base = {re.split(r"[<>=!~\[; ]", r)[0].lower() for r in project["dependencies"]}
    assert base == {"torch", "torchvision", "numpy", "pillow", "safetensors", "pyyaml", "tqdm"}
    for extra in ("detection", "viz", "tensorboard", "onnx", "gpu", "ray", "demo", "dev"):
        assert extra in extras
    # make test and make demo install dev, which pulls in every other extra but gpu (it replaces onnxruntime).
    assert "EXTRAS ?= dev\n" in (REPO / "Makefile").read_text()
    assert any(r.startswith("nasnet-zoo[demo,tensorboard,ray]") for r in extras["dev"])
    assert any(r.startswith("nasnet-zoo[detection,viz,onnx]") for r in extras["demo"])


def test_training_data_loads_without_pycocotools_and_evaluation_names_the_extra(tiny_coco: Path,
                                                                               monkeypatch) -> None:
    from nasnet_zoo.detection.data.coco import CocoDetection
    from nasnet_zoo.detection.evaluation.coco_evaluation import coco_evaluate
    hide(monkeypatch, "pycocotools")
    dataset = CocoDetection(tiny_coco, tiny_coco / "ann.json", train=True)
    image, target = dataset[0]
    assert image.shape == (3, 40, 48) and target["boxes"].tolist() == [[4.0, 4.0, 24.0, 20.0]]
    record = {"image_id": 1, "category_id": 5, "bbox": [4, 4, 20, 16], "score": 0.9}
    with pytest.raises(MissingExtra) as caught:
        coco_evaluate(dataset, [record])
    assert one_line_naming(caught.value, "detection").startswith("COCO evaluation")


def test_train_det_stops_before_training_with_one_line(tiny_coco: Path, tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    from nasnet_zoo.__main__ import main
    hide(monkeypatch, "pycocotools")
    data = ["--train-images", str(tiny_coco), "--train-ann", str(tiny_coco / "ann.json"),
            "--val-images", str(tiny_coco), "--val-ann", str(tiny_coco / "ann.json")]
    out_dir = tmp_path / "run"
    assert main(["train-det", *data, "--output-dir", str(out_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: COCO evaluation") and "pip install 'nasnet-zoo[detection]'" in err
    assert not (out_dir / "config.yaml").exists()  # stopped before building or training anything


def test_drawing_cells_needs_viz(monkeypatch, tmp_path: Path) -> None:
    from nasnet_zoo import NASNET_A
    from nasnet_zoo.visualize import draw_genotype
    hide(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtra) as caught:
        draw_genotype(NASNET_A, tmp_path / "cells.png")
    one_line_naming(caught.value, "viz")
    assert not (tmp_path / "cells.png").exists()


def test_detection_pictures_fall_back_to_pil_font_without_matplotlib(monkeypatch, recwarn) -> None:
    from nasnet_zoo.detection.evaluation.visualize import draw_boxes
    hide(monkeypatch, "matplotlib")
    canvas = torch.zeros(3, 64, 64, dtype=torch.uint8)
    out = draw_boxes(canvas, torch.tensor([[4.0, 4.0, 40.0, 40.0]]), ["digit 7"])
    assert out.shape == canvas.shape and out.sum() > 0
    assert not [w for w in recwarn if "font_size" in str(w.message)]


def test_onnx_export_and_sessions_name_the_onnx_extra(monkeypatch, tmp_path: Path) -> None:
    from nasnet_zoo.onnx import export_classifier, open_session
    from nasnet_zoo.onnx.detector import export_detector
    hide(monkeypatch, "onnx", "onnxruntime")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(MissingExtra) as caught:
        export_detector(model, tmp_path / "d.onnx", model_name="x", class_names=["a", "b"])  # type: ignore[arg-type]
    one_line_naming(caught.value, "onnx")
    with pytest.raises(MissingExtra):
        export_classifier(model, tmp_path / "c.onnx", model_name="x", input_size=(8, 8), mean=[0] * 3, std=[1] * 3)
    with pytest.raises(MissingExtra) as caught:
        open_session(tmp_path / "c.onnx", task="classification")
    assert "'gpu' extra" in one_line_naming(caught.value, "onnx")


def test_export_onnx_program_names_the_extra_before_any_work(monkeypatch, capsys, tmp_path: Path) -> None:
    from nasnet_zoo.__main__ import main
    hide(monkeypatch, "onnxruntime")
    assert main(["export-onnx", "--model", "nasnet_a_cifar", "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'nasnet-zoo[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()


def test_demo_data_names_the_demo_extra(monkeypatch) -> None:
    from nasnet_zoo.detection.data.demo_data import load_digit_images
    hide(monkeypatch, "sklearn")
    with pytest.raises(MissingExtra) as caught:
        load_digit_images(0, 0.3)
    one_line_naming(caught.value, "demo")


def test_metrics_without_tensorboard_keep_the_jsonl_and_say_so_once(monkeypatch, tmp_path: Path, caplog) -> None:
    import nasnet_zoo.utils.metrics as metrics
    monkeypatch.setattr(metrics, "tensorboard_available", lambda: False)
    monkeypatch.setattr(metrics, "_said_no_tensorboard", False)
    with caplog.at_level(logging.WARNING, logger="nasnet_zoo.utils.metrics"):
        for run in ("a", "b"):
            logger = metrics.MetricsLogger(tmp_path / run)
            logger.log(step=1, loss=0.5)
            logger.close()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "pip install 'nasnet-zoo[tensorboard]'" in said[0]
    assert json.loads((tmp_path / "a" / "metrics.jsonl").read_text()) == {"step": 1, "loss": 0.5}
    assert not (tmp_path / "a" / "tensorboard").exists()
