"""Run a trained detector on anyone's photos: files, folders or globs in, COCO results JSON and pictures out.

The same loop serves both kinds of weights: a ``tools/train_det.py`` checkpoint (PyTorch, rebuilt from the
run's ``config.yaml``) and an exported ``.onnx`` file (onnxruntime). Both produce detections in original image
pixels with the run's dataset category ids, so their outputs can be compared one for one.
"""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from nasnet_zoo.utils.checkpoint import CheckpointError, read_checkpoint
from nasnet_zoo.utils.io import atomic_write_json

from ..evaluation.visualize import draw_boxes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
RESULTS_NAME = "detections.json"
SUMMARY_NAME = "summary.json"


class PredictError(ValueError):
    """Bad input to the predict tool: no images, unusable weights, an output path that is a file."""


@dataclass
class Detections:
    boxes: np.ndarray        #: [N, 4] x0, y0, x1, y1 in original image pixels
    category_ids: np.ndarray  #: [N] dataset category ids
    scores: np.ndarray       #: [N]


@dataclass
class Predictor:
    """A loaded detector behind one call: a batch of uint8 RGB images -> their detections."""

    run: Callable[[list[np.ndarray]], list[Detections]]
    category_names: dict[int, str]
    description: dict[str, Any] = field(default_factory=dict)


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image files in the order given: files as they are, folders searched recursively for image suffixes,
    anything else read as a glob pattern. Duplicates are dropped; an empty result is an error."""
    if not inputs:
        raise PredictError("no inputs given: pass image files, folders or glob patterns (e.g. 'photos/*.jpg')")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise PredictError(f"{item} is not a file, a folder or a glob that matches files")
            found.extend(files)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise PredictError(f"no images found in {', '.join(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return unique


def read_image(path: Path) -> np.ndarray:
    """The whole image decoded as uint8 RGB [H, W, 3]; truncated or foreign files raise ValueError."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB")).copy()
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for truncated and foreign files
        raise ValueError(f"{path} is not a readable image ({err})") from None


def torch_predictor(checkpoint: str | os.PathLike, *, config_file: str | os.PathLike | None = None,
                    overrides: Sequence[str] = (), device: str = "cpu", fuse: bool | None = None) -> Predictor:
    """A ``train_det.py`` checkpoint rebuilt as its run built it, with ``overrides`` (KEY VALUE pairs such as
    ``test.proposals 100``) applied to the run's config. ``fuse`` runs the NASNet cells through
    ``optimize_for_inference`` (same detections, faster); the default fuses on CPU unless the cells use
    GroupNorm, which cannot be folded."""
    from nasnet_zoo.inference import optimize_for_inference, unfusable_norms

    from ..modeling.trained import category_names, load_detector

    checkpoint = Path(checkpoint)
    try:
        saved = read_checkpoint(checkpoint, written_by="tools/train_det.py")  # weights only: nothing in it runs
    except (CheckpointError, FileNotFoundError) as err:
        raise PredictError(str(err)) from None
    name = saved.get("model_name") if isinstance(saved, dict) else None
    if not name:
        raise PredictError(f"{checkpoint} does not name its detector (no 'model_name'); it is not a "
                           "tools/train_det.py checkpoint")
    if config_file is None and not (checkpoint.parent / "config.yaml").is_file():
        raise PredictError(f"{checkpoint} has no config.yaml beside it, which says how the detector was built; "
                           "pass --config-file with the training run's config.yaml")
    loaded = load_detector(name, checkpoint, config_file, overrides, saved=saved)
    model = loaded.model.to(device)
    not_fused = ""
    if fuse is None:  # default: fused on CPU, where it pays, unless the cells use a norm that cannot be folded
        unfusable = unfusable_norms(model) if device == "cpu" else []
        fuse = device == "cpu" and not unfusable
        if unfusable:
            not_fused = f"{unfusable[0]} cannot be folded into the convolutions"
    if fuse:
        model = optimize_for_inference(model)
    ids = loaded.category_ids[1:]
    names = dict(zip(ids, category_names(ids, loaded.annotations)))
    to_dataset = np.asarray(loaded.category_ids, dtype=np.int64)

    @torch.inference_mode()
    def run(images: list[np.ndarray]) -> list[Detections]:
        batch = [torch.from_numpy(im).to(device).permute(2, 0, 1).float() / 255.0 for im in images]
        outputs = model(batch)
        return [Detections(o["boxes"].cpu().numpy(), to_dataset[o["labels"].cpu().numpy()], o["scores"].cpu().numpy())
                for o in outputs]

    description = {"backend": "pytorch", "model": name, "device": device, "fused": fuse, "weights": str(checkpoint)}
    if not_fused:
        description["not_fused"] = not_fused
    return Predictor(run, names, description)


def onnx_predictor(path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None) -> Predictor:
    """An exported detector in onnxruntime; ``device='cuda'`` asks for the CUDA provider."""
    from nasnet_zoo.onnx import OnnxDetector, providers_for_device

    detector = OnnxDetector(path, providers=providers_for_device(device), threads=threads)
    names = dict(zip(detector.category_ids.tolist(), detector.class_names))

    def run(images: list[np.ndarray]) -> list[Detections]:  # the graph takes one image of any size
        outs = [detector.raw(im) for im in images]
        return [Detections(o["boxes"], detector.category_ids[o["labels"]], o["scores"]) for o in outs]

    return Predictor(run, names, {"backend": "onnxruntime", "model": detector.model_name,
                                  "providers": detector.providers, "weights": str(path)})


def load_predictor(weights: str | os.PathLike, *, config_file: str | os.PathLike | None = None,
                   overrides: Sequence[str] = (), device: str = "cpu", fuse: bool | None = None,
                   threads: int | None = None) -> Predictor:
    """By file type: ``.onnx`` runs in onnxruntime, anything else is read as a train_det.py checkpoint."""
    weights = Path(weights)
    if not weights.is_file():
        raise PredictError(f"--weights {weights} does not exist")
    if weights.suffix.lower() == ".onnx":
        if overrides or config_file:
            raise PredictError(f"{weights} is an exported graph, fixed at export: config overrides and "
                               "--config-file apply to .pth checkpoints only (re-export with the setting instead)")
        return onnx_predictor(weights, device=device, threads=threads)
    if len(overrides) % 2:
        raise PredictError(f"config overrides come as KEY VALUE pairs, got an odd count: {' '.join(overrides)}")
    return torch_predictor(weights, config_file=config_file, overrides=overrides, device=device, fuse=fuse)


def draw(image: np.ndarray, det: Detections, names: dict[int, str]) -> Image.Image:
    """Boxes with 'name score' captions on the photo."""
    captions = [f"{names.get(int(c), str(int(c)))} {float(s):.0%}" for c, s in zip(det.category_ids, det.scores)]
    canvas = draw_boxes(torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(det.boxes), captions)
    return Image.fromarray(canvas.permute(1, 2, 0).numpy())


def _batches(paths: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start:start + size]


def predict_images(predictor: Predictor, inputs: Sequence[str], output_dir: str | os.PathLike, *,
                   score_thresh: float = 0.5, batch_size: int = 1, strict: bool = False,
                   draw_pictures: bool = True, progress: bool = True) -> dict[str, Any]:
    """Detect on every input image; write ``detections.json`` (COCO results, with file names and category
    names), ``vis/<name>.jpg`` pictures and ``summary.json``; return the summary.

    An unreadable image is listed in the summary and skipped (``strict`` raises instead)."""
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 <= score_thresh <= 1.0:
        raise PredictError(f"--score-thresh must lie in [0, 1], got {score_thresh}")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise PredictError(f"--output-dir {out} is a file; give a folder (it is created when missing)")
    paths = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    vis = out / "vis"
    if draw_pictures:
        vis.mkdir(exist_ok=True)
    records: list[dict[str, Any]] = []
    images_meta: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seconds: list[float] = []
    image_id = 0
    bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
    for chunk in _batches(paths, batch_size):
        decoded: list[tuple[Path, np.ndarray]] = []
        for path in chunk:
            try:
                decoded.append((path, read_image(path)))
            except ValueError as err:
                if strict:
                    raise PredictError(f"{err}; without --strict such images are skipped and listed") from None
                skipped.append({"file": str(path), "reason": str(err)})
        if decoded:
            start = time.perf_counter()
            dets = predictor.run([im for _, im in decoded])
            seconds.append((time.perf_counter() - start) / len(decoded))
            for (path, image), det in zip(decoded, dets):
                image_id += 1
                keep = det.scores >= score_thresh
                det = Detections(det.boxes[keep], det.category_ids[keep], det.scores[keep])
                images_meta.append({"id": image_id, "file_name": str(path), "height": int(image.shape[0]),
                                    "width": int(image.shape[1]), "detections": int(len(det.scores))})
                for (x0, y0, x1, y1), cat, score in zip(det.boxes.tolist(), det.category_ids.tolist(),
                                                        det.scores.tolist()):
                    records.append({"image_id": image_id, "file_name": str(path), "category_id": int(cat),
                                    "category_name": predictor.category_names.get(int(cat), str(cat)),
                                    "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                                    "score": round(float(score), 5)})
                if draw_pictures:
                    draw(image, det, predictor.category_names).save(vis / f"{image_id:06d}_{path.stem}.jpg", quality=90)
        bar.update(len(chunk))
    bar.close()
    atomic_write_json(out / RESULTS_NAME, records)
    summary = {**predictor.description, "images": len(images_meta), "detections": len(records),
               "skipped": skipped, "score_thresh": score_thresh, "batch_size": batch_size,
               "ms_per_image": {"median": round(1000 * float(np.median(seconds)), 2) if seconds else None,
                                "mean": round(1000 * float(np.mean(seconds)), 2) if seconds else None},
               "categories": [{"id": k, "name": v} for k, v in sorted(predictor.category_names.items())],
               "image_list": images_meta, "results": str(out / RESULTS_NAME)}
    atomic_write_json(out / SUMMARY_NAME, summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines a user reads after a run."""
    where = ", ".join(summary["providers"]) if "providers" in summary else \
        f"{summary.get('device', 'cpu')}{' (fused backbone)' if summary.get('fused') else ''}"
    lines = [f"{summary['images']} images, {summary['detections']} detections (score >= {summary['score_thresh']}) "
             f"with {summary['model']} in {summary['backend']} on {where}",
             f"time per image: median {summary['ms_per_image']['median']} ms, mean {summary['ms_per_image']['mean']} ms",
             f"results: {summary['results']}"]
    for bad in summary["skipped"]:
        lines.append(f"skipped: {bad['reason']}")
    return "\n".join(lines)
