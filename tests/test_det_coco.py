"""COCO data: label mapping, crowd/degenerate/empty handling, clear errors, sampler, COCOeval wiring."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import SequentialSampler

from nasnet_zoo.detection.config import DemoConfig
from nasnet_zoo.detection.data.coco import CategoryMap, CocoDetection, CocoFormatError
from nasnet_zoo.detection.data.demo_data import (CATEGORY_IDS, DigitsSpec, build_digits_dataset, digits_spec,
                                                 uses_demo_data)
from nasnet_zoo.detection.data.samplers import GroupedBatchSampler, aspect_ratio_groups
from nasnet_zoo.detection.data.transforms import RandomHorizontalFlip
from nasnet_zoo.detection.evaluation.coco_evaluation import METRIC_NAMES, coco_evaluate


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory) -> Path:
    """A 3-image COCO set with a crowd box, a degenerate box, an image without boxes, sparse category ids."""
    root = tmp_path_factory.mktemp("tiny_coco")
    from PIL import Image
    for i in (1, 2, 3):
        Image.new("RGB", (40 + 10 * i, 30), (i * 40, 0, 0)).save(root / f"{i}.jpg")
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 40 + 10 * i, "height": 30} for i in (1, 2, 3)],
            "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 12], "iscrowd": 0, "area": 120},
                {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "iscrowd": 1, "area": 200},
                {"id": 3, "image_id": 2, "category_id": 3, "bbox": [4, 4, 0, 8], "iscrowd": 0, "area": 0},
                {"id": 4, "image_id": 2, "category_id": 3, "bbox": [4, 4, 6, 8], "iscrowd": 0, "area": 48}]}
    (root / "ann.json").write_text(json.dumps(data))
    return root


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_category_map_round_trip():
    cats = CategoryMap.from_categories([{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}])
    assert cats.num_classes == 3 and cats.to_label(1) == 1 and cats.to_label(90) == 2
    assert cats.to_coco(2) == 90 and cats.name(1) == "person"


def test_train_targets_skip_crowd_degenerate_and_empty(tiny_coco, caplog):
    with caplog.at_level("INFO"):
        train = CocoDetection(tiny_coco, tiny_coco / "ann.json", train=True)
    assert train.ids == [1, 2]  # image 3 has no boxes
    assert train.num_degenerate == 1 and "1 degenerate boxes dropped" in caplog.text
    _, target = train[0]
    assert target["labels"].tolist() == [train.categories.to_label(7)] == [2]  # sparse ids -> 1..K
    assert target["boxes"].tolist() == [[1.0, 2.0, 11.0, 14.0]]
    with_empty = CocoDetection(tiny_coco, tiny_coco / "ann.json", train=True, keep_empty=True)
    assert with_empty.ids == [1, 2, 3] and len(with_empty[2][1]["boxes"]) == 0
    evaluation = CocoDetection(tiny_coco, tiny_coco / "ann.json", train=False)
    assert evaluation[0][1]["iscrowd"].tolist() == [0, 1]


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"),
    ([1, 2], "not a COCO object"),
    ({"images": [], "annotations": []}, "missing list"),
    ({"images": [{"id": 1, "file_name": "1.jpg"}], "categories": [{"id": 1}],
      "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 2, 2], "category_id": 9}]}, "category 9"),
    ({"images": [{"id": 1, "file_name": "1.jpg"}], "categories": [{"id": 1}],
      "annotations": [{"id": 5, "image_id": 2, "bbox": [0, 0, 2, 2], "category_id": 1}]}, "image id 2"),
])
def test_bad_annotation_files_fail_clearly(tiny_coco, tmp_path, content, message):
    with pytest.raises(CocoFormatError, match=message):
        CocoDetection(tiny_coco, _write(tmp_path, content), train=True)


def test_missing_image_names_file_and_id(tiny_coco, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(tiny_coco, images)
    (images / "2.jpg").unlink()
    with pytest.raises(CocoFormatError, match=r"2\.jpg \(image id 2\) does not exist"):
        CocoDetection(images, images / "ann.json", train=True)


def test_horizontal_flip_mirrors_boxes():
    image = torch.zeros(3, 10, 20)
    image[:, :, :5] = 1
    target = {"boxes": torch.tensor([[0.0, 1.0, 5.0, 4.0]]), "labels": torch.tensor([1])}
    flipped, out = RandomHorizontalFlip(1.0)(image, target)
    assert out["boxes"].tolist() == [[15.0, 1.0, 20.0, 4.0]]
    assert flipped[:, :, 15:].min() == 1 and flipped[:, :, :15].max() == 0
    assert target["boxes"].tolist() == [[0.0, 1.0, 5.0, 4.0]]  # the input is untouched


def test_grouped_batches_never_mix_orientations():
    ratios = [1.5, 0.6, 1.2, 0.7, 0.8, 1.3, 1.0]
    groups = aspect_ratio_groups(ratios)
    batches = list(GroupedBatchSampler(SequentialSampler(ratios), groups, 2))
    assert sorted(i for b in batches for i in b) == list(range(len(ratios)))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    assert len(batches) == len(GroupedBatchSampler(SequentialSampler(ratios), groups, 2))


def test_coco_eval_on_real_annotations(coco_tiny):
    """Ground truth as detections scores 1.0; shifted boxes score less; numbers keyed as documented."""
    val = CocoDetection(coco_tiny / "val2017", coco_tiny / "annotations" / "instances_val2017.json", train=False)
    anns = [a for a in val.coco.dataset["annotations"] if not a.get("iscrowd", 0)]
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in anns]
    metrics = coco_evaluate(val, perfect)
    assert list(metrics) == list(METRIC_NAMES)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR100"] == pytest.approx(1.0)
    shifted = [{**r, "bbox": [r["bbox"][0] + r["bbox"][2] * 0.3, r["bbox"][1], r["bbox"][2], r["bbox"][3]]}
               for r in perfect]
    worse = coco_evaluate(val, shifted)
    assert worse["AP75"] < 0.5 < worse["AP50"] < 1.0
    assert coco_evaluate(val, []) == {k: 0.0 for k in METRIC_NAMES}


def test_demo_dataset_is_valid_coco(tmp_path):
    spec = DigitsSpec(num_train=6, num_val=3, canvas=64, min_digit=16, max_digit=24)
    paths = build_digits_dataset(spec, root=tmp_path)
    assert build_digits_dataset(spec, root=tmp_path) == paths  # cached
    train = CocoDetection(paths.train_images, paths.train_ann, train=True)
    val = CocoDetection(paths.val_images, paths.val_ann, train=False)
    assert train.categories.coco_ids == CATEGORY_IDS and len(val) == 3
    image, target = train[0]
    assert image.shape == (3, 64, 64) and len(target["boxes"]) >= 1
    boxes = target["boxes"]
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 64
    # the box hugs the ink: the image is bright inside it and the box edges touch ink
    x0, y0, x1, y1 = boxes[0].long().tolist()
    assert image[:, y0:y1, x0:x1].max() > 0.5


def test_detector_fits_real_coco_boxes(coco_tiny, tmp_path):
    """Smaller twin of the documented overfit run (docs/detection.md, AP50 > 0.5 on its photos): two real photos,
    a narrow NASNet-A, 40 iterations through the COCO path: the training loss falls by more than 2x and the
    evaluation writes the 12 numbers."""
    from nasnet_zoo.config import load_config
    from nasnet_zoo.detection.config import DetConfig
    from nasnet_zoo.detection.engine.runner import run

    ann = str(coco_tiny / "annotations" / "instances_train2017.json")
    images = str(coco_tiny / "train2017")
    cfg = load_config(DetConfig(), None, [
        "data.train_images", images, "data.train_ann", ann, "data.val_images", images, "data.val_ann", ann,
        "data.image_ids", "[114694, 180232]", "data.num_workers", "0", "threads", "1",
        "model.backbone_args", "{cells_per_stack: 1, num_conv_filters: 8, stem_multiplier: 0.5, bn_momentum: 0.1}",
        "model.frozen_bn", "false", "model.trainable_stages", "4", "test.precise_bn.num_iter", "4",
        "model.options", "{fpn_channels: 32, box_head_dim: 64, box_batch_size_per_image: 32}",
        "input.min_size", "[128]", "input.max_size", "128", "input.hflip_prob", "0.0",
        "solver.max_iter", "40", "solver.ims_per_batch", "2", "solver.base_lr", "0.02", "solver.warmup_iters", "5",
        "solver.lr_schedule", "cosine", "solver.clip_grad_norm", "10", "solver.log_period", "1",
        "solver.checkpoint_period", "1000", "output_dir", str(tmp_path)])
    threads = torch.get_num_threads()
    try:
        metrics = run(cfg)
    finally:
        torch.set_num_threads(threads)
    from nasnet_zoo.utils.io import read_jsonl
    losses = [r["loss"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "loss" in r]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5
    assert list(metrics) == list(METRIC_NAMES)


def test_demo_config_and_the_demo_dataset_share_their_fields():
    """DEMO.* are DigitsSpec's canvas fields, declared once; both engines use the demo data when no data is given."""
    demo = DemoConfig(num_train=7, canvas=64)
    assert digits_spec(demo, seed=3) == DigitsSpec(num_train=7, canvas=64, seed=3)
    assert digits_spec(DemoConfig(), seed=0) == DigitsSpec()
    assert uses_demo_data("", None) and not uses_demo_data("", "val.json")
