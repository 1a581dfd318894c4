"""detectron2 integration: both designs from the configs, weights, training, evaluation, features."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("detectron2", reason="detectron2 is not installed; build it from source (docs/detectron2.md)")

from detectron2.config import CfgNode, get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

import nasnet_zoo  # noqa: E402
from nasnet_zoo.detection import build_detector  # noqa: E402
from nasnet_zoo.detection.d2 import add_nasnet_config  # noqa: E402
from nasnet_zoo.detection.d2.checkpoint import NASNetCheckpointer  # noqa: E402
from nasnet_zoo.cli.train_det import d2_args  # noqa: E402
from nasnet_zoo.detection.d2 import train_net  # noqa: E402
from nasnet_zoo.testing import randomize_batchnorm  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "detectron2"
DEMO = CONFIGS / "faster_rcnn_nasnet_a_mobile_fpn_demo_cpu.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def main(argv: list[str]) -> None:
    """The detectron2 engine on a command line, as ``train-det --engine detectron2`` runs it (errors raised)."""
    train_net.main(d2_args(argv))


def make_cfg(config: Path, *overrides: str) -> CfgNode:
    cfg = get_cfg()
    add_nasnet_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *overrides])
    return cfg


def randomized_classifier(arch: str = "nasnet_a_mobile") -> torch.nn.Module:
    """A classifier with non-trivial BN statistics, so that a wrong BN mapping shows in the outputs."""
    return randomize_batchnorm(nasnet_zoo.create_model(arch), seed=1)


def small_nasnet(tmp_path: Path) -> list[str]:
    """Overrides for a NASNet-A from its genotype file at 1 @ 264: the same wiring, a quarter of the graph."""
    genotype = tmp_path / "nasnet_a.json"
    genotype.write_text(nasnet_zoo.NASNET_A.to_json())
    return ["MODEL.NASNET.GENOTYPE_FILE", str(genotype), "MODEL.NASNET.CELLS_PER_STACK", "1",
            "MODEL.NASNET.NUM_CONV_FILTERS", "11"]


@pytest.fixture(scope="module")
def mobile_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "nasnet_a_mobile_random.pth"
    torch.save(randomized_classifier().state_dict(), path)
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("faster_rcnn_*.yaml")))
def test_configs_build(name: str) -> None:
    cfg = make_cfg(CONFIGS / name)
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    assert model.backbone.size_divisibility == 32
    if "_c4_" in name:
        assert {k: v.stride for k, v in shapes.items()} == {"stage4": 16}
        expected = {"nasnet_a_mobile": 2 * 528, "nasnet_a_large": 2 * 2016}[cfg.MODEL.NASNET.ARCH]
        assert shapes["stage4"].channels == expected
        assert type(model.roi_heads).__name__ == "NASNetROIHeads"
        assert model.proposal_generator.rpn_head.objectness_logits.in_channels == 512  # narrowed RPN conv
    else:
        assert {k: v.stride for k, v in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
        bottom_up = model.backbone.bottom_up.output_shape()
        assert [bottom_up[f"stage{k}"].stride for k in range(2, 6)] == [4, 8, 16, 32]


@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_mobile_designs_detect(design: str) -> None:
    cfg = make_cfg(CONFIGS / f"faster_rcnn_nasnet_a_mobile_{design}_1x.yaml", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
                   "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "10")
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 256, (3, 200, 260), dtype=torch.uint8), "height": 100, "width": 130}])
    inst = out[0]["instances"]
    assert len(inst) == 10 and inst.image_size == (100, 130)
    assert inst.pred_boxes.tensor[:, 2].max() <= 130 and torch.isfinite(inst.scores).all()


def test_frozen_stages_and_norm() -> None:
    cfg = make_cfg(DEMO, "MODEL.NASNET.FREEZE_AT", "2", "MODEL.NASNET.NORM", "BN")
    body = build_model(cfg).backbone.bottom_up.body
    frozen = {n for n, m in body.cells.items() if not any(p.requires_grad for p in m.parameters())}
    assert frozen == {"cell_stem_0", "cell_stem_1", "cell_0", "cell_1", "cell_2", "cell_3"}
    assert isinstance(body.cells["cell_4"].pre0.bn, torch.nn.BatchNorm2d)
    assert not isinstance(body.cells["cell_0"].pre0.bn, torch.nn.BatchNorm2d)  # frozen stats
    with pytest.raises(ValueError, match="MODEL.NASNET.NORM"):
        build_model(make_cfg(DEMO, "MODEL.NASNET.NORM", "GN"))
    with pytest.raises(ValueError, match="OUT_FEATURES"):
        build_model(make_cfg(DEMO, "MODEL.NASNET.OUT_FEATURES", "['stage7']"))


def test_features_equal_torchvision_engine(mobile_weights: Path) -> None:
    """Same weights -> the same maps as create_model(features_only=True) and the torchvision engine."""
    image = torch.randn(1, 3, 128, 160)
    fpn = build_model(make_cfg(DEMO)).eval()
    NASNetCheckpointer(fpn).load(str(mobile_weights))
    reference = nasnet_zoo.create_model("nasnet_a_mobile", features_only=True, out_indices=(1, 2, 3, 4))
    assert not reference.load_state_dict(torch.load(mobile_weights), strict=False).missing_keys
    with torch.no_grad():
        ours = fpn.backbone.bottom_up(image)
        theirs = reference.eval()(image)
    for k, ref in zip(("stage2", "stage3", "stage4", "stage5"), theirs):
        torch.testing.assert_close(ours[k], ref, rtol=1e-4, atol=1e-4)

    c4 = build_model(make_cfg(CONFIGS / "faster_rcnn_nasnet_a_mobile_c4_1x.yaml")).eval()
    NASNetCheckpointer(c4).load(str(mobile_weights))
    engine = build_detector("fasterrcnn_nasnet_a_mobile_c4", num_classes=81, backbone_weights=str(mobile_weights),
                            trainable_stages=3).eval()
    crops = torch.randn(3, 1056, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(c4.backbone(image)["stage4"], engine.backbone(image)["0"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(c4.roi_heads.res5(crops).flatten(1), engine.roi_heads.box_head(crops),
                                   rtol=1e-4, atol=1e-4)


def test_weights_from_tag_and_safetensors(mobile_weights: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    state = torch.load(mobile_weights)
    cfg = make_cfg(DEMO)
    expected = build_model(cfg)
    NASNetCheckpointer(expected).load(str(mobile_weights))
    key = "backbone.bottom_up.body.cells.cell_5.pre0.conv.weight"

    safetensors_path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors_path))
    model = build_model(cfg)
    NASNetCheckpointer(model).load(str(safetensors_path))
    torch.testing.assert_close(model.state_dict()[key], expected.state_dict()[key], rtol=0, atol=0)

    def fake_hub(model: torch.nn.Module, weight: str | None, *, model_name: str) -> None:
        assert (weight, model_name) == ("nasnet_a_mobile.tf_in1k", "nasnet_a_mobile")
        model.load_state_dict(state)

    monkeypatch.setattr("nasnet_zoo.hub.load_pretrained", fake_hub)
    model = build_model(cfg)
    NASNetCheckpointer(model).load("nasnet_a_mobile.tf_in1k")
    torch.testing.assert_close(model.state_dict()[key], expected.state_dict()[key], rtol=0, atol=0)

    wrong = tmp_path / "cifar.pth"
    torch.save(nasnet_zoo.create_model("nasnet_a_cifar").state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit MODEL.NASNET"):
        NASNetCheckpointer(build_model(cfg)).load(str(wrong))


def _subset(ann: Path, out: Path, num_images: int) -> Path:
    data = json.loads(ann.read_text())
    keep = {img["id"] for img in data["images"][:num_images]}
    data["images"] = [img for img in data["images"] if img["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    out.write_text(json.dumps(data))
    return out


def test_train_resume_and_eval_on_coco_tiny(coco_tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = ["--config-file", str(DEMO), "--train-images", str(coco_tiny / "train2017"),
             "--train-ann", str(_subset(coco_tiny / "annotations" / "instances_train2017.json",
                                        tmp_path / "train.json", 8))]
    val = ["--val-images", str(coco_tiny / "val2017"),
           "--val-ann", str(_subset(coco_tiny / "annotations" / "instances_val2017.json", tmp_path / "val.json", 3))]
    common = ["OUTPUT_DIR", str(out), "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128",
              "MODEL.NASNET.FREEZE_AT", "3",
              "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SOLVER.CHECKPOINT_PERIOD", "2"]
    main(train + ["SOLVER.MAX_ITER", "2"] + common)
    assert (out / "last_checkpoint").read_text() == "model_final.pth"

    main(train + val + ["--resume", "SOLVER.MAX_ITER", "3"] + common)
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = [r for r in records if "total_loss" in r]
    assert [r["iteration"] for r in losses] == [1, 2]  # written at the last iteration of each run
    assert "Starting training from iteration 2" in (out / "log.txt").read_text()
    assert all(math.isfinite(r[k]) for r in losses for k in r if k.startswith("loss_"))
    trained = json.loads((out / "eval_results.json").read_text())["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(trained)
    # COCO's orderings (AP averages IoU 0.5..0.95, so it cannot beat AP50; AP50 counts every AP75 match):
    # a mislabelled or reordered result breaks them whatever 3 iterations learnt
    assert trained["AP50"] >= trained["AP"] and trained["AP50"] >= trained["AP75"]

    main(val + ["--config-file", str(DEMO), "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth")] + common)
    assert json.loads((out / "eval_results.json").read_text())["bbox"] == pytest.approx(trained, nan_ok=True)


def _photo(path: Path, size: tuple[int, int]) -> torch.Tensor:
    from PIL import Image

    image = Image.open(path).convert("RGB").resize(size)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("design,score_thresh", [("fpn", "0.0"), ("c4", "1.0")])
def test_onnx_export_matches_pytorch(design: str, score_thresh: str, coco_tiny: Path, tmp_path: Path) -> None:
    """FPN with detections on real photos of two sizes; C4 with a threshold no score passes (empty outputs)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install nasnet-zoo[onnx])")
    from nasnet_zoo.onnx import export_d2_detector, run_d2_parity

    config = DEMO if design == "fpn" else CONFIGS / "faster_rcnn_nasnet_a_mobile_c4_1x.yaml"
    cfg = make_cfg(config, *small_nasnet(tmp_path), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", score_thresh,
                   "TEST.DETECTIONS_PER_IMAGE", "20", "MODEL.RPN.POST_NMS_TOPK_TEST", "50")
    model = build_model(cfg).eval()
    photos = sorted((coco_tiny / "val2017").glob("*.jpg"))[:2]
    images = [_photo(photos[0], (224, 160)), _photo(photos[1], (224, 160)), _photo(photos[1], (200, 136))]
    path = str(tmp_path / f"{design}.onnx")
    adapter = export_d2_detector(model, images[0], path, opset=17)
    report = run_d2_parity(adapter, path, images)
    assert report.ok and report.tolerances == {"box atol (px)": 1e-2, "score atol": 1e-4}, report.table()
    assert [c.figures["torch dets"] for c in report.cases] == ([20, 20, 20] if design == "fpn" else [0, 0, 0])
    with pytest.raises(ValueError, match="opset"):
        export_d2_detector(model, images[0], path, opset=11)


def test_cli_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--train-ann"):
        main(["--train-images", str(tmp_path), "--train-ann", str(tmp_path / "missing.json")])
    with pytest.raises(ValueError, match="go together"):
        main(["--val-images", str(tmp_path)])
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="--num-gpus 2 needs that many GPUs"):
            main(["--num-gpus", "2", "--config-file", str(DEMO)])
