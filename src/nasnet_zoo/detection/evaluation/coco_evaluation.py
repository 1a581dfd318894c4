"""COCO evaluation of a torchvision detector: predictions in COCO's id space, COCOeval's 12 numbers."""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from nasnet_zoo.utils.extras import require

from ..data.coco import CocoDetection, collate

log = logging.getLogger(__name__)

#: COCOeval.stats in order.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def to_coco_results(outputs: list[dict[str, torch.Tensor]], image_ids: list[int],
                    dataset: CocoDetection) -> list[dict[str, Any]]:
    """Detections as COCO result records: boxes [x, y, w, h] in image pixels, COCO category ids."""
    records = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, out["scores"].tolist(), out["labels"].tolist()):
            records.append({"image_id": image_id, "category_id": dataset.categories.to_coco(int(label)),
                            "bbox": [round(v, 2) for v in box], "score": round(float(score), 5)})
    return records


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetection, device: torch.device, *, rank: int = 0, world_size: int = 1,
            batch_size: int = 2, num_workers: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """Run the model on this process's share of ``dataset``; all COCO result records land on every rank."""
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate)
    was_training = model.training
    model.eval()
    records: list[dict[str, Any]] = []
    for images, targets in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        outputs = model([im.to(device) for im in images])
        records += to_coco_results(outputs, [int(t["image_id"]) for t in targets], dataset)
    model.train(was_training)
    if world_size > 1:
        gathered: list[list[dict[str, Any]]] = [[] for _ in range(world_size)]
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    return records


def require_coco_evaluation() -> Any:
    """pycocotools' ``cocoeval`` module, or :class:`~nasnet_zoo.utils.extras.MissingExtra` naming ``detection``.

    Called before training too, so that a run that will evaluate stops at once, not after its training.
    """
    return require("pycocotools.cocoeval", extra="detection", feature="COCO evaluation (pycocotools)")


def coco_evaluate(dataset: CocoDetection, records: list[dict[str, Any]]) -> dict[str, float]:
    """COCOeval (bbox) over the dataset's images; the 12 standard numbers keyed by :data:`METRIC_NAMES`."""
    cocoeval = require_coco_evaluation()
    if not records:
        log.warning("no detections on %d images: every COCO metric is 0", len(dataset))
        return {name: 0.0 for name in METRIC_NAMES}
    gt = dataset.coco
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(records)
        evaluator = cocoeval.COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = list(dataset.ids)
        evaluator.evaluate()
        evaluator.accumulate()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluator.summarize()
    log.debug("COCOeval bbox:\n%s", buffer.getvalue().rstrip())  # the same 12 numbers are printed in one line
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}


def format_metrics(metrics: dict[str, float]) -> str:
    """Percentages as COCO papers print them; '-' where COCOeval has no such boxes (it reports -1)."""
    return "  ".join(f"{k} {100 * v:.1f}" if v >= 0 else f"{k} -" for k, v in metrics.items())
