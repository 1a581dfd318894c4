"""Training engine and CLI: end to end on the demo path, resume after a kill, NaN guard, DDP with gloo."""
from __future__ import annotations

import functools
import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasnet_zoo.config import load_config
from nasnet_zoo.detection import build_detector
from nasnet_zoo.detection.config import DetConfig, SolverConfig
from nasnet_zoo.detection.engine.train_loop import lr_factor
from nasnet_zoo.detection.evaluation.coco_evaluation import METRIC_NAMES
from nasnet_zoo.detection.modeling.builders import detector_identity
from nasnet_zoo.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nasnet_zoo.utils.io import read_jsonl
from process_helpers import killed_after_logging

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "train_det.py"
DEMO_YAML = REPO / "configs" / "det" / "demo.yaml"
TINY_MODEL = "{cells_per_stack: 1, num_conv_filters: 4, stem_multiplier: 0.25}"
TINY_OPTIONS = ("{fpn_channels: 16, box_head_dim: 32, anchor_sizes: [8, 16, 32, 64, 128], "
                "box_batch_size_per_image: 16, rpn_batch_size_per_image: 32, rpn_pre_nms_top_n_train: 100, "
                "rpn_post_nms_top_n_train: 32, rpn_pre_nms_top_n_test: 50, rpn_post_nms_top_n_test: 16}")
#: The demo config shrunk to seconds: 8 train / 4 val canvases of 64 px, a 4-filter NASNet-A.
TINY = ["demo.num_train", "8", "demo.num_val", "4", "demo.canvas", "64", "demo.min_digit", "16",
        "demo.max_digit", "28", "demo.pretrain_steps", "0", "model.backbone_args", TINY_MODEL,
        "model.options", TINY_OPTIONS, "input.min_size", "[64]", "input.max_size", "64",
        "solver.ims_per_batch", "2", "solver.warmup_iters", "2", "solver.log_period", "1", "device", "cpu"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nasnet_zoo_home")


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "NASNET_ZOO_HOME": str(home), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def train_det(home, monkeypatch, capsys):
    """``tools/train_det.py`` run in this process (no interpreter start-up); returns its stdout."""
    main = runpy.run_path(str(TOOL), run_name="train_det")["main"]
    monkeypatch.setenv("NASNET_ZOO_HOME", str(home))

    def call(*args: str) -> str:
        threads = torch.get_num_threads()
        capsys.readouterr()
        try:
            assert main(list(args)) == 0
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return call


def _fails(main_args: list[str], home: Path, monkeypatch, capsys) -> str:
    """train-det's one error line; a usage or config error exits 2, as in every program."""
    main = runpy.run_path(str(TOOL), run_name="train_det")["main"]
    monkeypatch.setenv("NASNET_ZOO_HOME", str(home))
    capsys.readouterr()
    assert main(main_args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_lr_schedule_warmup_steps_and_cosine():
    solver = SolverConfig(max_iter=100, warmup_iters=10, warmup_factor=0.1, steps=[50, 80], gamma=0.1)
    assert lr_factor(0, solver) == pytest.approx(0.1)
    assert lr_factor(5, solver) == pytest.approx(0.55)
    assert [lr_factor(i, solver) for i in (10, 49, 50, 80)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    cosine = SolverConfig(max_iter=100, warmup_iters=0, lr_schedule="cosine")
    assert [lr_factor(i, cosine) for i in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])


def test_demo_path_trains_evaluates_draws_and_reloads(train_det, tmp_path):
    out = tmp_path / "run"
    stdout = train_det("--output-dir", str(out), "--max-iter", "3", "--vis", "2", *TINY, "demo.pretrain_steps", "2")
    assert "demo data: scikit-learn digits" in stdout and "held-out digit accuracy" in stdout
    metrics = json.loads((out / "coco_eval.json").read_text())
    assert list(metrics) == list(METRIC_NAMES)
    # COCO's own orderings hold whatever the model learnt; a mislabelled or reordered metric breaks them
    assert metrics["AP50"] >= metrics["AP75"] and metrics["AR1"] <= metrics["AR10"] <= metrics["AR100"]
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["iter"] for r in records if "loss" in r] == [1, 2, 3] and all(r["loss"] > 0 for r in records if "loss" in r)
    assert any(p.name.startswith("events.") for p in (out / "tensorboard").iterdir())
    assert len(list((out / "vis").glob("*.png"))) == 2
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    assert all(f" {name} " in stdout for name in METRIC_NAMES)

    visualize = runpy.run_path(str(REPO / "tools" / "visualize_det.py"), run_name="visualize_det")["main"]
    assert visualize(["--weights", str(out / "model_final.pth"), "--num", "1", "--output-dir", str(tmp_path / "v")]) == 0
    assert len(list((tmp_path / "v").glob("*.png"))) == 1

    evaluated = tmp_path / "eval"
    train_det("--eval-only", "--weights", str(out / "model_final.pth"), "--output-dir", str(evaluated), *TINY)
    assert json.loads((evaluated / "coco_eval.json").read_text()) == pytest.approx(metrics)


def _ground_truth_as_detections(dataset, shift: float) -> tuple[list[dict], list[int]]:
    """Every ground-truth box as a detection (score 1), moved right by ``shift`` of its width."""
    outputs, ids = [], list(dataset.ids)
    for image_id in ids:
        anns = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=image_id))
        boxes = torch.tensor([[x + shift * w, y, x + shift * w + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        outputs.append({"boxes": boxes.reshape(-1, 4), "scores": torch.ones(len(anns)),
                        "labels": torch.tensor([dataset.categories.to_label(a["category_id"]) for a in anns])})
    return outputs, ids


def test_coco_metrics_of_perfect_and_shifted_boxes(tmp_path):
    """The evaluator the runs report: ground truth scores AP 1; boxes shifted by a quarter width (IoU 0.6)
    pass IoU 0.5 but not 0.75, a half width (IoU 1/3) passes neither."""
    from nasnet_zoo.detection.data.coco import CocoDetection
    from nasnet_zoo.detection.data.demo_data import DigitsSpec, build_digits_dataset
    from nasnet_zoo.detection.evaluation.coco_evaluation import coco_evaluate, to_coco_results

    paths = build_digits_dataset(DigitsSpec(num_train=2, num_val=6, canvas=96), root=tmp_path)
    dataset = CocoDetection(paths.val_images, paths.val_ann, train=False)
    expected = {0.0: (1.0, 1.0, 1.0), 0.25: (None, 1.0, 0.0), 0.5: (0.0, 0.0, 0.0)}
    for shift, (ap, ap50, ap75) in expected.items():
        metrics = coco_evaluate(dataset, to_coco_results(*_ground_truth_as_detections(dataset, shift), dataset))
        assert (metrics["AP50"], metrics["AP75"]) == pytest.approx((ap50, ap75)), shift
        if ap is not None:
            assert metrics["AP"] == pytest.approx(ap), shift


#: The killed run dies right after logging this iteration (tests/process_helpers.py: an exact kill point).
KILL_AT = 5


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill_then_resume_continues_at_the_same_iteration_and_lr(home, tmp_path, train_det):
    out = tmp_path / "run"
    args = [str(TOOL), "--output-dir", str(out), "--max-iter", "40", *TINY, "solver.checkpoint_period", "3",
            "solver.base_lr", "0.01"]
    killed = subprocess.run(killed_after_logging(str(TOOL), args[1:], "iter", KILL_AT), env=_env(home), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert max(r["iter"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r) == KILL_AT
    before = {r["iter"]: r for r in read_jsonl(out / "metrics.jsonl")}
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    assert saved == 3  # the last checkpoint before the kill

    stdout = train_det("--output-dir", str(out), "--resume")  # the run's config.yaml supplies everything else
    assert f"resumed from {out / 'checkpoint.pt'} at iteration {saved}" in stdout
    records = read_jsonl(out / "metrics.jsonl")
    after = [r for r in records[len(before):] if "loss" in r]
    assert after[0]["iter"] == saved + 1 and after[-1]["iter"] == 40
    replayed = [r for r in after if r["iter"] in before]
    assert [r["iter"] for r in replayed] == [4, 5]  # logged after the checkpoint, lost with the kill, run again
    for record in replayed:  # same data, RNG and optimizer state: the replayed iterations are identical
        assert record["lr"] == pytest.approx(before[record["iter"]]["lr"], rel=1e-9)
        assert record["loss"] == pytest.approx(before[record["iter"]]["loss"], rel=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(home, tmp_path, monkeypatch):
    import torchvision.models.detection.roi_heads as roi_heads
    from nasnet_zoo.detection.engine.runner import run

    calls = {"n": 0}
    real_loss = roi_heads.fastrcnn_loss

    def loss_turning_nan(*a, **k):
        calls["n"] += 1
        cls, box = real_loss(*a, **k)
        return (cls * float("nan"), box) if calls["n"] >= 5 else (cls, box)

    monkeypatch.setattr(roi_heads, "fastrcnn_loss", loss_turning_nan)
    monkeypatch.setenv("NASNET_ZOO_HOME", str(home))
    threads = torch.get_num_threads()
    cfg = load_config(DetConfig(), DEMO_YAML, TINY + ["output_dir", str(tmp_path), "solver.max_iter", "20",
                                                      "solver.checkpoint_period", "2"])
    try:
        with pytest.raises(FloatingPointError, match=r"at iteration 5 .*Last good checkpoint: .*iteration 4"):
            run(cfg)
    finally:
        torch.set_num_threads(threads)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (tmp_path / "model_final.pth").exists()


def _tiny_detector(num_classes: int):
    return build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=num_classes,
                          backbone_args=dict(cells_per_stack=1, num_conv_filters=4, stem_multiplier=0.25),
                          fpn_channels=16, box_head_dim=32)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    model = _tiny_detector(3)
    identity = detector_identity("fasterrcnn_nasnet_a_mobile_fpn", 3, [1, 2])
    save_checkpoint(tmp_path / "a.pth", {"model": model.state_dict(), **identity})
    load = functools.partial(load_checkpoint, written_by="tools/train_det.py")
    load(tmp_path / "a.pth", _tiny_detector(3), identity)  # the same model loads
    with pytest.raises(CheckpointError, match="num_classes: file has 3, this run builds 5"):
        load(tmp_path / "a.pth", _tiny_detector(5),
             detector_identity("fasterrcnn_nasnet_a_mobile_fpn", 5, [1, 2, 3, 4]))
    other = build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, fpn_channels=16, box_head_dim=32,
                           backbone_args=dict(cells_per_stack=1, num_conv_filters=8, stem_multiplier=0.25))
    with pytest.raises(CheckpointError, match="a.pth does not fit this model: .* of another shape"):
        load(tmp_path / "a.pth", other, identity)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load(tmp_path / "junk.pth", model, identity)
    # NaN weights are never written over a good checkpoint
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    good = (tmp_path / "a.pth").read_bytes()
    with pytest.raises(FloatingPointError, match="previous checkpoint is kept"):
        save_checkpoint(tmp_path / "a.pth", {"model": model.state_dict(), **identity})
    assert (tmp_path / "a.pth").read_bytes() == good


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ddp_with_two_gloo_processes(home, tmp_path):
    ddp_out = tmp_path / "ddp"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(TOOL), "--output-dir", str(ddp_out), "--max-iter", "3", *TINY],
                            env=_env(home), capture_output=True, text=True, timeout=240, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [r["iter"] for r in read_jsonl(ddp_out / "metrics.jsonl") if "loss" in r] == [1, 2, 3]
    assert list(json.loads((ddp_out / "coco_eval.json").read_text())) == list(METRIC_NAMES)
    assert torch.load(ddp_out / "model_final.pth", weights_only=True)["iteration"] == 3


def test_cli_errors_are_clear(home, tmp_path, monkeypatch, capsys):
    def fails(*args: str) -> str:
        return _fails(list(args), home, monkeypatch, capsys)

    assert "unknown config key 'solver.base_lrr'" in fails("solver.base_lrr", "0.1")
    assert "give both --train-images and --train-ann" in fails("--train-ann", "x.json")
    assert "annotation file" in fails("--train-images", str(tmp_path), "--train-ann", str(tmp_path / "missing.json"))
    from nasnet_zoo.cli.train_det import without_engine_flag as strip
    assert strip(["--engine", "detectron2", "--output-dir", "detectron2", "--engine=detectron2"]) == \
        ["--output-dir", "detectron2"]
    try:
        import detectron2  # noqa: F401
    except ImportError:
        assert "detectron2" in fails("--engine", "detectron2")
