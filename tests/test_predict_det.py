"""tools/predict_det.py: a trained detector on arbitrary photos, from a checkpoint or an exported .onnx.

The detector is fasterrcnn_nasnet_a_mobile_fpn shrunk to 1 cell per stack with a sharpened random class head
(as in test_onnx_detector.py), so real detections appear on textured images.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from nasnet_zoo.cli.predict_det import main
from nasnet_zoo.config import dump_config
from nasnet_zoo.detection.modeling.builders import build_detector
from nasnet_zoo.detection.modeling.builders import detector_identity
from nasnet_zoo.utils.checkpoint import save_checkpoint
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.engine.predict import PredictError, expand_inputs, load_predictor, predict_images
from nasnet_zoo.onnx import export_detector
from nasnet_zoo.onnx.parity import synthetic_image

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "fasterrcnn_nasnet_a_mobile_fpn"
CATEGORIES = [3, 7, 11, 20]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as tools/train_det.py leaves it (config.yaml, model_final.pth), its ONNX export, photos."""
    out = tmp_path_factory.mktemp("predict_run")
    (out / "val.json").write_text(json.dumps({"categories": [{"id": c, "name": f"thing{c}"} for c in CATEGORIES]}))
    cfg = DetConfig()
    cfg.data.val_ann = str(out / "val.json")
    cfg.model.name = NAME
    cfg.model.backbone_args = {"cells_per_stack": 1, "num_conv_filters": 8}
    cfg.model.options = {"fpn_channels": 32, "box_head_dim": 64, "box_score_thresh": 0.55,
                         "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 60}
    cfg.input.min_size, cfg.input.max_size = [160], 256
    torch.manual_seed(0)
    model = build_detector(NAME, num_classes=len(CATEGORIES) + 1, backbone_args=cfg.model.backbone_args,
                           min_size=160, max_size=256, **cfg.model.options).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(30)
    save_checkpoint(out / "model_final.pth",
                    {"model": model.state_dict(), **detector_identity(NAME, len(CATEGORIES) + 1, CATEGORIES)})
    dump_config(cfg, out / "config.yaml")
    export_detector(model, out / "det.onnx", model_name=NAME, category_ids=[0] + CATEGORIES,
                    class_names=["__background__"] + [f"thing{c}" for c in CATEGORIES])
    photos = out / "photos"
    (photos / "nested").mkdir(parents=True)
    Image.fromarray(synthetic_image(360, 480, seed=11)).save(photos / "a.png")
    Image.fromarray(synthetic_image(300, 260, seed=12)).save(photos / "nested" / "b.jpg", quality=95)
    Image.fromarray(synthetic_image(240, 320, seed=13)).save(out / "c.png")
    return out


def _by_image(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(Path(r["file_name"]).name, []).append(r)
    return out


def test_checkpoint_eager_fused_and_onnx_give_the_same_detections(run_dir: Path, tmp_path: Path) -> None:
    inputs = [str(run_dir / "photos"), str(run_dir / "*.png")]
    eager = predict_images(load_predictor(run_dir / "model_final.pth", fuse=False), inputs, tmp_path / "pt",
                           score_thresh=0.0, progress=False)
    fused_predictor = load_predictor(run_dir / "model_final.pth")  # CPU: fused by default
    assert fused_predictor.description["fused"] is True
    fused = predict_images(fused_predictor, inputs, tmp_path / "fused", score_thresh=0.0, progress=False)
    assert fused["detections"] == eager["detections"]
    ort = predict_images(load_predictor(run_dir / "det.onnx"), inputs, tmp_path / "onnx", score_thresh=0.0,
                         progress=False)
    assert eager["images"] == ort["images"] == 3
    assert eager["detections"] > 0 and eager["detections"] == ort["detections"]
    a = _by_image(json.loads((tmp_path / "pt" / "detections.json").read_text()))
    for other in ("onnx", "fused"):
        _assert_same(a, _by_image(json.loads((tmp_path / other / "detections.json").read_text())))
    assert {r["category_name"] for rs in a.values() for r in rs} <= {f"thing{c}" for c in CATEGORIES}
    assert ort["providers"] == ["CPUExecutionProvider"]
    assert len(list((tmp_path / "pt" / "vis").glob("*.jpg"))) == 3


def _assert_same(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        ra = sorted(a[name], key=lambda r: -r["score"])
        rb = sorted(b[name], key=lambda r: -r["score"])
        assert [r["category_id"] for r in ra] == [r["category_id"] for r in rb]
        assert np.abs(np.array([r["bbox"] for r in ra]) - np.array([r["bbox"] for r in rb])).max() < 1e-2
        assert np.abs(np.array([r["score"] for r in ra]) - np.array([r["score"] for r in rb])).max() < 1e-4


def test_results_load_in_pycocotools_and_respect_the_threshold(run_dir: Path, tmp_path: Path) -> None:
    predictor = load_predictor(run_dir / "model_final.pth", fuse=False)
    summary = predict_images(predictor, [str(run_dir / "photos")], tmp_path, score_thresh=0.7, batch_size=2,
                             progress=False)
    records = json.loads((tmp_path / "detections.json").read_text())
    assert all(r["score"] >= 0.7 for r in records) and len(records) == summary["detections"]
    gt = COCO()
    gt.dataset = {"images": [{"id": i["id"], "height": i["height"], "width": i["width"]} for i in summary["image_list"]],
                  "categories": summary["categories"], "annotations": []}
    gt.createIndex()
    if records:
        loaded = gt.loadRes(records)
        assert len(loaded.anns) == len(records)
    lenient = predict_images(predictor, [str(run_dir / "photos")], tmp_path / "low", score_thresh=0.0, progress=False)
    assert lenient["detections"] > summary["detections"]  # the threshold really filters


def test_batched_and_single_runs_agree(run_dir: Path, tmp_path: Path) -> None:
    """Same-sized photos: a batch pads nothing, so batching must not change a detection."""
    for seed in (21, 22, 23):
        Image.fromarray(synthetic_image(240, 320, seed=seed)).save(tmp_path / f"{seed}.png")
    predictor = load_predictor(run_dir / "model_final.pth", fuse=False)
    one = predict_images(predictor, [str(tmp_path / "*.png")], tmp_path / "one", score_thresh=0.0, progress=False)
    two = predict_images(predictor, [str(tmp_path / "*.png")], tmp_path / "two", score_thresh=0.0, batch_size=2,
                         progress=False)
    a = json.loads((tmp_path / "one" / "detections.json").read_text())
    b = json.loads((tmp_path / "two" / "detections.json").read_text())
    assert len(a) == len(b) > 0
    assert [r["category_id"] for r in a] == [r["category_id"] for r in b]
    assert np.abs(np.array([r["bbox"] for r in a]) - np.array([r["bbox"] for r in b])).max() < 1e-2
    assert [i["detections"] for i in one["image_list"]] == [i["detections"] for i in two["image_list"]]


def test_unreadable_image_is_named_and_skipped_or_fatal_with_strict(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(run_dir / "photos", folder)
    good = (folder / "nested" / "b.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(good[: len(good) // 3])  # a truncated JPEG
    (folder / "notes.txt").write_text("not an image")            # ignored: not an image suffix
    summary = predict_images(load_predictor(run_dir / "det.onnx"), [str(folder)], tmp_path / "out",
                             score_thresh=0.0, progress=False)
    assert summary["images"] == 2
    assert [Path(s["file"]).name for s in summary["skipped"]] == ["broken.jpg"]
    assert "broken.jpg" in summary["skipped"][0]["reason"]
    with pytest.raises(PredictError, match="broken.jpg"):
        predict_images(load_predictor(run_dir / "det.onnx"), [str(folder)], tmp_path / "strict", strict=True,
                       progress=False)


def test_cli_runs_and_reports(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["--weights", str(run_dir / "det.onnx"), str(run_dir / "c.png"), "--output-dir", str(tmp_path),
               "--score-thresh", "0.0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "1 images" in text and "CPUExecutionProvider" in text
    assert (tmp_path / "summary.json").is_file()


def test_bad_input_gets_clear_errors(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="no inputs"):
        expand_inputs([])
    with pytest.raises(PredictError, match="not a file, a folder or a glob"):
        expand_inputs([str(tmp_path / "missing*.jpg")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PredictError, match="no images found"):
        expand_inputs([str(empty)])
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    predictor = load_predictor(run_dir / "det.onnx")
    with pytest.raises(PredictError, match="is a file"):
        predict_images(predictor, [str(run_dir / "c.png")], a_file, progress=False)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(run_dir / "model_final.pth", lonely / "model_final.pth")
    with pytest.raises(PredictError, match="config.yaml"):
        load_predictor(lonely / "model_final.pth")
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(PredictError, match="not a readable"):
        load_predictor(garbage)
    assert main(["--weights", str(tmp_path / "nope.onnx"), str(run_dir / "c.png")]) == 2
    not_a_detector = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(not_a_detector), dynamo=False)
    with pytest.raises(ValueError, match="not exported by nasnet-zoo, expected a detection model"):
        load_predictor(not_a_detector)
    assert main(["--weights", str(not_a_detector), str(run_dir / "c.png")]) == 2


def test_config_overrides_reach_the_detector(run_dir: Path, tmp_path: Path) -> None:
    """Trailing KEY VALUE pairs (and the deprecated --opts) apply to the run's config: one proposal leaves at most
    one box per class."""
    image = str(run_dir / "photos")
    assert main(["--weights", str(run_dir / "model_final.pth"), image, "--output-dir", str(tmp_path / "all"),
                 "--score-thresh", "0.0", "--no-pictures"]) == 0
    assert main(["--weights", str(run_dir / "model_final.pth"), image, "--output-dir", str(tmp_path / "one"),
                 "--score-thresh", "0.0", "--no-pictures", "--opts", "test.proposals", "1"]) == 0
    assert main(["--weights", str(run_dir / "model_final.pth"), "--output-dir", str(tmp_path / "trailing"),
                 "--score-thresh", "0.0", "--no-pictures", image, "test.proposals", "1"]) == 0
    found = {run: [len(boxes) for boxes in _by_image(json.loads((tmp_path / run / "detections.json").read_text()))
                   .values()] for run in ("all", "one", "trailing")}
    assert max(found["all"]) > len(CATEGORIES) >= max(found["one"]) > 0
    assert found["trailing"] == found["one"]
    with pytest.raises(PredictError, match="KEY VALUE pairs"):
        load_predictor(run_dir / "model_final.pth", overrides=["test.proposals"])
    with pytest.raises(PredictError, match="fixed at export"):
        load_predictor(run_dir / "det.onnx", overrides=["test.proposals", "1"])
