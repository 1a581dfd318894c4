"""ONNX export of whole detectors: the CLI on a train_det-style run folder, parity, OnnxDetector, bad input.

The detector is fasterrcnn_nasnet_a_mobile_fpn shrunk to 1 cell per stack, with a sharpened random class head
and a score threshold that leaves detections on textured images but none on the blank built-in case, so the
parity table covers images with and without detections.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import nasnet_zoo
from nasnet_zoo.cli import export_onnx as cli
from nasnet_zoo.config import dump_config
from nasnet_zoo.detection.modeling.builders import build_detector
from nasnet_zoo.detection.modeling.builders import detector_identity
from nasnet_zoo.utils.checkpoint import save_checkpoint
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.modeling.trained import load_detector
from nasnet_zoo.onnx import (DetectorGraph, OnnxDetector, OnnxModelError, builtin_detector_cases, run_detector_parity,
                             torch_detections)
from nasnet_zoo.onnx.parity import synthetic_image

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "fasterrcnn_nasnet_a_mobile_fpn"
CATEGORIES = [3, 7, 11, 20]


def run_config(annotations: Path) -> DetConfig:
    cfg = DetConfig()
    cfg.data.val_ann = str(annotations)  # the export names categories from the run's own annotation file
    cfg.model.name = NAME
    cfg.model.backbone_args = {"cells_per_stack": 1, "num_conv_filters": 8}
    cfg.model.options = {"fpn_channels": 32, "box_head_dim": 64, "box_score_thresh": 0.55,
                         "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 60}
    cfg.input.min_size, cfg.input.max_size = [160], 256
    return cfg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as tools/train_det.py leaves it: config.yaml and model_final.pth."""
    out = tmp_path_factory.mktemp("det_run")
    (out / "val.json").write_text(json.dumps({"categories": [{"id": c, "name": f"thing{c}"} for c in CATEGORIES]}))
    cfg = run_config(out / "val.json")
    torch.manual_seed(0)
    model = build_detector(NAME, num_classes=len(CATEGORIES) + 1, backbone_args=cfg.model.backbone_args,
                           min_size=160, max_size=256, **cfg.model.options)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(30)  # peaked class scores: distinct detections
    save_checkpoint(out / "model_final.pth",
                    {"model": model.state_dict(), **detector_identity(NAME, len(CATEGORIES) + 1, CATEGORIES)})
    dump_config(cfg, out / "config.yaml")
    Image.fromarray(synthetic_image(360, 480, seed=11)).save(out / "photo.png")
    return out


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> dict:
    rc = cli.main(["--detector", NAME, "--checkpoint", str(run_dir / "model_final.pth"), "--output",
                   str(run_dir / "det.onnx"), "--verify", str(run_dir / "photo.png"), "--benchmark", "1",
                   "--report", str(run_dir / "report.json")])
    return {"rc": rc, "path": run_dir / "det.onnx", "report": json.loads((run_dir / "report.json").read_text())}


def test_cli_export_parity_with_and_without_detections(exported: dict) -> None:
    assert exported["rc"] == 0
    cases = {c["name"]: c for c in exported["report"]["parity"]["cases"]}
    assert len(cases) == 1 + len(builtin_detector_cases())
    assert all(c["ok"] for c in cases.values())
    assert cases["blank 480x640"]["torch dets"] == cases["blank 480x640"]["onnx dets"] == 0
    with_dets = [c for c in cases.values() if c["torch dets"] > 0]
    assert len(with_dets) >= 3 and all(c["max box diff"] <= 1e-2 and c["max score diff"] <= 1e-4 for c in with_dets)
    speed = exported["report"]["speed"]
    assert (speed["runs"], speed["inputs"]) == (1, 1)  # --benchmark 1 over the one --verify photo
    assert speed["speedup"] == pytest.approx(speed["pytorch_eager_ms"] / speed["onnxruntime_ms"])


def test_file_metadata_and_dynamic_size(exported: dict) -> None:
    model = onnx.load(str(exported["path"]))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 16  # RoIAlign(aligned=True)
    meta = {p.key: json.loads(p.value) if p.value[:1] in "[{" else p.value for p in model.metadata_props}
    assert meta["nasnet_zoo.task"] == "detection" and meta["nasnet_zoo.model_name"] == NAME
    assert meta["nasnet_zoo.category_ids"] == [0] + CATEGORIES
    assert meta["nasnet_zoo.class_names"] == ["__background__"] + [f"thing{c}" for c in CATEGORIES]
    assert meta["nasnet_zoo.preprocessing"]["min_size"] == 160
    assert meta["nasnet_zoo.version"] == nasnet_zoo.__version__
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]]
    assert all(dims)


def test_exact_scale_sizes_and_real_photos(exported: dict, run_dir: Path, tf_mobile) -> None:
    """Sides that scale to whole numbers (200x300 -> 160x240) are where torchvision's own trace is a pixel off;
    the photos are the TF oracle's two COCO photos (shipped in tests/fixtures)."""
    model = load_detector(NAME, run_dir / "model_final.pth").model
    runner = OnnxDetector(exported["path"])
    cases = [("200x300", synthetic_image(200, 300, seed=5)), ("250x250", synthetic_image(250, 250, seed=6))] + \
        [(f"coco photo {i}", pixels) for i, pixels in enumerate(tf_mobile.pixels)]
    report = run_detector_parity(lambda im: torch_detections(model, im), runner.raw, cases)
    assert report.ok, report.table()
    graph = DetectorGraph(model).eval()  # the exported module is the eager model, bit for bit
    with torch.no_grad():
        boxes, labels, scores = graph(torch.from_numpy(cases[0][1]))
    expected = torch_detections(model, cases[0][1])
    assert np.array_equal(boxes.numpy(), expected["boxes"]) and np.array_equal(scores.numpy(), expected["scores"])


def test_onnx_detector_inputs_and_outputs(exported: dict, run_dir: Path) -> None:
    det = OnnxDetector(exported["path"])
    assert det.providers == ["CPUExecutionProvider"]
    array = np.asarray(Image.open(run_dir / "photo.png").convert("RGB"))
    by_path, by_pil, by_array = det(run_dir / "photo.png"), det(Image.open(run_dir / "photo.png")), det(array)
    for other in (by_pil, by_array):
        assert np.array_equal(by_path["boxes"], other["boxes"]) and np.array_equal(by_path["labels"], other["labels"])
    assert len(by_path["scores"]) > 0 and set(by_path["labels"]) <= set(CATEGORIES)
    assert by_path["names"] == [f"thing{c}" for c in by_path["labels"]]
    boxes = by_path["boxes"]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= array.shape[1]).all() and (boxes[:, 3] <= array.shape[0]).all()
    empty = det(np.full((64, 48, 3), 114, np.uint8))
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["names"] == []
    with pytest.raises(TypeError, match="uint8"):
        det(array.astype(np.float32) / 255)


def test_mismatch_exits_nonzero_with_a_table(exported: dict, run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    import nasnet_zoo.onnx.detector as det_onnx
    real = det_onnx.torch_detections
    # Reuse the fixture's export (the exporter is tested above); only the comparison is under test here.
    monkeypatch.setattr(det_onnx, "export_detector", lambda model, path, **kw: shutil.copy(exported["path"], path))

    def shifted(model, image):  # a PyTorch side whose boxes moved by a pixel
        out = real(model, image)
        out["boxes"] = out["boxes"] + 1.0
        return out
    monkeypatch.setattr(det_onnx, "torch_detections", shifted)
    rc = cli.main(["--detector", NAME, "--checkpoint", str(run_dir / "model_final.pth"),
                   "--output", str(run_dir / "shifted.onnx"), "--verify"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL" in out and "MISMATCH: box diff 1" in out


def test_checkpoint_of_another_model_is_refused(run_dir: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc = cli.main(["--detector", "fasterrcnn_nasnet_a_mobile_c4", "--checkpoint", str(run_dir / "model_final.pth"),
                   "--output", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "model_name" in err and NAME in err
    (tmp_path / "cut.pth").write_bytes((run_dir / "model_final.pth").read_bytes()[:1000])
    rc = cli.main(["--detector", NAME, "--checkpoint", str(tmp_path / "cut.pth"), "--output", str(tmp_path / "x.onnx")])
    assert rc == 2 and "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_corrupt_detector_file(exported: dict, tmp_path: Path) -> None:
    data = exported["path"].read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(OnnxModelError, match="truncated or corrupt"):
        OnnxDetector(tmp_path / "cut.onnx")


@pytest.mark.parametrize("name, options", [
    # the paper's split: one RoI level, NASNet cells run per proposal as the second stage
    ("fasterrcnn_nasnet_a_mobile_c4", {"rpn_conv_channels": 32}),
    # torchvision's mobile layout (the latency target's): two pyramid levels and the pooled one
    ("fasterrcnn_nasnet_a_mobile_fpn", {"fpn_channels": 32, "box_head_dim": 64, "out_indices": (3, 4),
                                        "anchor_sizes": [(32, 64, 128)] * 3}),
], ids=["c4", "fpn-strides-16-32"])
def test_other_designs_export_exactly(tmp_path: Path, name: str, options: dict) -> None:
    from nasnet_zoo.onnx import export_detector
    torch.manual_seed(0)
    model = build_detector(name, num_classes=3, min_size=160, max_size=256,
                           backbone_args={"cells_per_stack": 1, "num_conv_filters": 8}, **options,
                           rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=60, box_score_thresh=0.0).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(30)
    export_detector(model, tmp_path / "det.onnx", model_name=name, class_names=["__background__", "a", "b"])
    runner = OnnxDetector(tmp_path / "det.onnx")
    cases = [("200x300", synthetic_image(200, 300, seed=9)), ("333x517", synthetic_image(333, 517, seed=4))]
    report = run_detector_parity(lambda im: torch_detections(model, im), runner.raw, cases)
    assert report.ok and all(c.figures["torch dets"] > 0 for c in report.cases), report.table()
