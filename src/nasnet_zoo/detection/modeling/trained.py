"""A detector from a run's config: built for training by the train-det runner, and built the same way again
for inference, back from its checkpoint with the dataset's category ids and names (what the ONNX export and
prediction need beside the weights).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from nasnet_zoo.config import load_config
from nasnet_zoo.genotypes import Genotype
from nasnet_zoo.utils.checkpoint import CheckpointError, apply_checkpoint, read_checkpoint

from ..config import DetConfig
from .builders import build_detector, detector_identity

#: The program that writes detector checkpoints (recorded in them, checked when they are read).
WRITER = "tools/train_det.py"


def build_model(cfg: DetConfig, num_classes: int) -> GeneralizedRCNN:
    """The detector that ``cfg`` describes (``MODEL.*``, input sizes, test-time proposals and detections)."""
    options: dict[str, Any] = dict(cfg.model.options)
    if cfg.model.genotype:
        options["genotype"] = Genotype.load(cfg.model.genotype)
    weights = cfg.model.backbone_weights or None
    sizes = list(cfg.input.min_size)
    if cfg.test.proposals:  # keep the top N after NMS (the RPN still ranks at least N before it)
        options["rpn_post_nms_top_n_test"] = cfg.test.proposals
        options["rpn_pre_nms_top_n_test"] = max(cfg.test.proposals, options.get("rpn_pre_nms_top_n_test", 1000))
    return build_detector(cfg.model.name, num_classes=num_classes, backbone_weights=weights,
                          backbone_args=dict(cfg.model.backbone_args), norm=cfg.model.norm,
                          gn_groups=cfg.model.gn_groups,
                          trainable_stages=cfg.model.trainable_stages,
                          min_size=sizes if len(sizes) > 1 else sizes[0], max_size=cfg.input.max_size,
                          box_detections_per_img=cfg.test.detections_per_img, **options)


def category_names(category_ids: Sequence[int], annotations: str | os.PathLike | None = None) -> list[str]:
    """Names of the dataset categories, from a COCO annotation file; without one, COCO's names when the ids
    are exactly COCO's 80, else the ids as text."""
    if annotations is not None:
        with open(annotations, encoding="utf-8") as f:
            known = {int(c["id"]): str(c["name"]) for c in json.load(f).get("categories", [])}
        missing = [c for c in category_ids if c not in known]
        if missing:
            raise ValueError(f"{annotations} does not name categories {missing[:10]}; pass the annotation file "
                             "the detector was trained with")
        return [known[int(c)] for c in category_ids]
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    coco = {i: n for i, n in enumerate(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
            if n not in ("N/A", "__background__")}
    if set(int(c) for c in category_ids) == set(coco):
        return [coco[int(c)] for c in category_ids]
    return [str(c) for c in category_ids]


class LoadedDetector(NamedTuple):
    model: GeneralizedRCNN     #: eval mode, weights from the checkpoint
    category_ids: list[int]    #: dataset category id of each model label (index 0, the background, is 0)
    annotations: Path | None   #: the run's COCO annotation file, when it is still there (category names)


def load_detector(name: str, checkpoint: str | os.PathLike, config_file: str | os.PathLike | None = None,
                  overrides: Sequence[str] = (), *, saved: Mapping[str, Any] | None = None) -> LoadedDetector:
    """Build detector ``name`` as its training run did and load ``checkpoint`` (a train_det.py checkpoint).

    The run's config is ``config_file`` or the ``config.yaml`` saved beside the checkpoint. ``saved``: the
    checkpoint's contents when the caller has read them already (the file is then not read again).
    """
    checkpoint = Path(checkpoint)
    if saved is None:
        saved = read_checkpoint(checkpoint, written_by=WRITER)  # weights only: nothing in the file can run
    if "model" not in saved or "num_classes" not in saved:
        raise CheckpointError(f"{checkpoint} is not a tools/train_det.py checkpoint (needs 'model' and 'num_classes')")
    if config_file is None and (checkpoint.parent / "config.yaml").is_file():
        config_file = checkpoint.parent / "config.yaml"
    config = load_config(DetConfig(), config_file, overrides)
    config.model.name = name
    config.model.backbone_weights = ""  # the checkpoint holds every weight; nothing to fetch
    categories = [int(c) for c in saved.get("categories") or range(1, saved["num_classes"])]
    model = build_model(config, saved["num_classes"])
    identity = detector_identity(name, saved["num_classes"], saved.get("categories", categories))
    apply_checkpoint(saved, model, identity, source=str(checkpoint), written_by=WRITER)
    found = [Path(f) for f in (config.data.val_ann, config.data.train_ann) if f and Path(f).is_file()]
    return LoadedDetector(model.eval(), [0] + categories, found[0] if found else None)
