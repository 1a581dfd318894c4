"""CPU guidance of train-det: one line when the size will clearly be slow, then the measured s/iter, and no
word (and no changed setting) otherwise."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from nasnet_zoo.detection.engine import cpu_speed
from nasnet_zoo.detection.engine.cpu_speed import CpuSpeedNote, resized_size

CPU = torch.device("cpu")


def test_resized_size_follows_torchvisions_rule() -> None:
    # detectron2's default on small images: 128 px upscaled to 800
    up = resized_size([(128, 128)] * 3, [800], 1333)
    assert (up.height, up.width, up.short) == (800, 800, 800)
    # --image-size 320 on COCO-shaped photos: the longer side is capped
    photo = resized_size([(480, 640), (427, 640), (480, 640)], [320], 320)
    assert (photo.height, photo.width) == (240, 320)
    # multi-scale training: the largest shorter side counts
    assert resized_size([(480, 640)], [640, 800], 1333).short == 800


def test_slow_cpu_size_says_so_once_then_gives_the_measured_speed(monkeypatch, caplog) -> None:
    clock = iter([10.0, 12.0, 14.0, 16.5, 99.0, 99.0])
    monkeypatch.setattr(cpu_speed.time, "perf_counter", lambda: next(clock))
    note = CpuSpeedNote(resized_size([(128, 128)], [800], 1333), CPU, max_iter=1000)
    with caplog.at_level(logging.WARNING, logger="nasnet_zoo.detection.engine.cpu_speed"):
        note.start()
        for done in range(1, 7):
            note.iteration_done(done, done)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "resize the images to 800x800 px (upscaled from 128x128 images)" in lines[0] and "slow for a CPU" in lines[0]
    assert "--image-size 320" in lines[0] and "configs/det/demo.yaml" in lines[0]
    # iterations 2-4 took 6.5 s: 2.17 s/iter, 996 left
    assert note.measured == pytest.approx(6.5 / 3)
    assert "2.2 s/iter" in lines[1] and "996 iterations left would take 36.0 min" in lines[1]
    assert "--image-size 320" in lines[1]


def test_short_runs_report_at_their_last_iteration(monkeypatch, caplog) -> None:
    clock = iter([1.0, 4.0])
    monkeypatch.setattr(cpu_speed.time, "perf_counter", lambda: next(clock))
    note = CpuSpeedNote(resized_size([(600, 800)], [800], 1333), CPU, max_iter=2)
    with caplog.at_level(logging.WARNING, logger="nasnet_zoo.detection.engine.cpu_speed"):
        note.iteration_done(1, 1)
        note.iteration_done(2, 2)
    assert note.measured == pytest.approx(3.0) and "3.0 s/iter" in caplog.text


@pytest.mark.parametrize("size, device, enabled", [
    (([(128, 128)], [128], 128), CPU, True),            # the demo's size
    (([(480, 640)], [320], 320), CPU, True),            # --image-size 320
    (([(128, 128)], [800], 1333), torch.device("cuda"), True),  # a GPU
    (([(128, 128)], [800], 1333), CPU, False),          # not the main process
])
def test_quiet_where_it_is_not_slow_or_not_ours_to_say(size, device, enabled, caplog) -> None:
    note = CpuSpeedNote(resized_size(*size), device, max_iter=100, enabled=enabled)
    with caplog.at_level(logging.WARNING):
        note.start()
        for done in range(1, 6):
            note.iteration_done(done, done)
    assert not note.active and caplog.text == "" and note.measured is None


def test_train_det_on_cpu_at_a_slow_size_prints_the_estimate_and_keeps_the_settings(tmp_path: Path,
                                                                                    caplog) -> None:
    """The real program: tiny photos upscaled to 640 px, a narrow backbone, 5 iterations."""
    from nasnet_zoo.cli.train_det import main
    images = tmp_path / "images"
    images.mkdir()
    anns = []
    for i in range(1, 3):
        Image.new("RGB", (96, 80), (40 * i, 90, 20)).save(images / f"{i}.png")
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 40, 30], "iscrowd": 0, "area": 1200})
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": 96, "height": 80}
                                          for i in (1, 2)], "annotations": anns,
                               "categories": [{"id": 1, "name": "thing"}]}))
    out = tmp_path / "run"
    caplog.set_level(logging.WARNING, logger="nasnet_zoo.detection.engine.cpu_speed")
    assert main(["--train-images", str(images), "--train-ann", str(ann), "--output-dir", str(out),
                 "--device", "cpu", "--max-iter", "5", "--batch-size", "1", "--image-size", "640",
                 "model.backbone_args", "{cells_per_stack: 1, num_conv_filters: 8, stem_multiplier: 0.5}",
                 "model.options", "{fpn_channels: 16, box_head_dim: 32, rpn_pre_nms_top_n_train: 100, "
                 "rpn_post_nms_top_n_train: 50, box_batch_size_per_image: 32, rpn_batch_size_per_image: 32}",
                 "model.norm", "GN", "model.gn_groups", "4", "data.num_workers", "0", "threads", "1"]) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "nasnet_zoo.detection.engine.cpu_speed"]
    assert len(said) == 2, said
    assert "640x533 px (upscaled from 96x80 images)" in said[0] and "--image-size 320" in said[0]
    assert "s/iter at 640x533 px" in said[1] and "1 torch threads" in said[1] and "the 1 iteration left" in said[1]
    config = (out / "config.yaml").read_text()
    assert "- 640" in config and "max_size: 640" in config  # the user's settings, unchanged
