"""Predictions beside ground truth, drawn to PNG (left: model, right: annotations)."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from ..data.coco import CategoryMap, CocoDetection


def _font() -> str | None:
    """DejaVu Sans through matplotlib (the 'viz' extra) when it is installed, so captions scale with the image."""
    try:
        from matplotlib import font_manager
        return font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    except Exception:  # matplotlib missing or broken font cache: PIL's default font still works
        return None


def draw_boxes(canvas: torch.Tensor, boxes: torch.Tensor, captions: list[str], color: str = "lime") -> torch.Tensor:
    """Boxes with captions on a uint8 CHW image, line width and font sized to the image; returns uint8 CHW."""
    if len(boxes) == 0:
        return canvas
    size = max(10, min(canvas.shape[-2:]) // 16)
    font = _font()  # without one, PIL's default font (torchvision warns when given a size for it)
    return draw_bounding_boxes(canvas, boxes.detach().cpu().float(), labels=captions, colors=color,
                               width=max(1, size // 6), font=font, font_size=size if font else None)


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, categories: CategoryMap,
                    scores: torch.Tensor | None = None, color: str = "lime") -> torch.Tensor:
    """Boxes with 'name score' captions on a float CHW [0, 1] image; returns uint8 CHW."""
    canvas = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
    captions = [categories.name(int(l)) + (f" {float(s):.0%}" if scores is not None else "")
                for l, s in zip(labels, scores if scores is not None else labels)]
    return draw_boxes(canvas, boxes, captions, color)


def side_by_side(left: torch.Tensor, right: torch.Tensor, gap: int = 8) -> Image.Image:
    """Two uint8 CHW images next to each other on a white strip."""
    height = max(left.shape[1], right.shape[1])
    out = torch.full((3, height, left.shape[2] + gap + right.shape[2]), 255, dtype=torch.uint8)
    out[:, : left.shape[1], : left.shape[2]] = left
    out[:, : right.shape[1], left.shape[2] + gap:] = right
    return Image.fromarray(out.permute(1, 2, 0).numpy())


@torch.no_grad()
def save_visualizations(model: torch.nn.Module, dataset: CocoDetection, device: torch.device, out_dir: str | Path, count: int,
                        score_thresh: float = 0.5, min_side: int = 384) -> list[Path]:
    """Draw ``count`` dataset images: predictions (score >= ``score_thresh``) left, ground truth right.

    Small images are enlarged (by an integer factor, to ``min_side``) so captions stay readable."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    paths = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[index]
        pred = model([image.to(device)])[0]
        keep = pred["scores"] >= score_thresh
        scale = max(1, min_side // min(image.shape[-2:]))
        big = image.repeat_interleave(scale, -2).repeat_interleave(scale, -1) if scale > 1 else image
        left = draw_detections(big, pred["boxes"][keep] * scale, pred["labels"][keep], dataset.categories,
                               pred["scores"][keep], color="lime")
        right = draw_detections(big, target["boxes"] * scale, target["labels"], dataset.categories, color="orange")
        path = out_dir / f"{int(target['image_id']):012d}.png"
        side_by_side(left, right).save(path)
        paths.append(path)
    model.train(was_training)
    return paths
