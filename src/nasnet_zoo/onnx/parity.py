"""Parity between onnxruntime and PyTorch for every export: one set of tolerances, one comparison per output
kind (classifier logits, detections), one report, and the built-in test images.

The tolerances are absolute: logits within 1e-4, and for detections the same count and labels, boxes within
1e-2 pixels and scores within 1e-4. They are the same whether the graph is a classifier, a torchvision
detector or a detectron2 model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Tolerances:
    """How closely an onnxruntime output must agree with PyTorch's (absolute differences)."""

    logits_atol: float = 1e-4
    box_atol: float = 1e-2   #: pixels
    score_atol: float = 1e-4


TOLERANCES = Tolerances()


@dataclass
class ParityCase:
    """One compared input: its name, whether it passed, and the figures shown in the report."""

    name: str
    ok: bool
    figures: dict[str, Any]
    problem: str = ""


@dataclass
class ParityReport:
    title: str
    tolerances: dict[str, float]
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    def failures(self) -> list[ParityCase]:
        return [c for c in self.cases if not c.ok]

    def table(self) -> str:
        """A fixed-width table of every case, failures marked, for terminals and logs."""
        columns = ["case"] + list(dict.fromkeys(k for c in self.cases for k in c.figures)) + ["result"]
        rows = [[c.name] + [_fmt(c.figures.get(k, "")) for k in columns[1:-1]]
                + ["ok" if c.ok else f"MISMATCH: {c.problem}"] for c in self.cases]
        widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows)]
        line = lambda cells: "  ".join(str(x).ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items())
        status = "PASS" if self.ok else f"FAIL ({len(self.failures())} of {len(self.cases)} cases differ)"
        return "\n".join([f"{self.title}: {status}; tolerances: {tol}", line(columns),
                          line(["-" * w for w in widths])] + [line(r) for r in rows])

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "ok": self.ok, "tolerances": self.tolerances,
                "cases": [{"name": c.name, "ok": c.ok, "problem": c.problem,
                           **{k: _plain(v) for k, v in c.figures.items()}} for c in self.cases]}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---- classifiers -------------------------------------------------------------------------------------------
def compare_logits(name: str, batch: np.ndarray, reference: np.ndarray, onnx_out: np.ndarray,
                   tolerances: Tolerances = TOLERANCES) -> ParityCase:
    atol = tolerances.logits_atol
    figures: dict[str, Any] = {"input": "x".join(map(str, batch.shape))}
    if reference.shape != onnx_out.shape:
        return ParityCase(name, False, figures, f"shape {onnx_out.shape} != {reference.shape}")
    diff = float(np.abs(reference - onnx_out).max()) if reference.size else 0.0
    figures["max |diff|"] = diff
    figures["top-1 equal"] = bool((reference.argmax(-1) == onnx_out.argmax(-1)).all())
    ok = diff <= atol and bool(np.isfinite(onnx_out).all())
    return ParityCase(name, ok, figures, "" if ok else f"max |diff| {diff:.3g} > {atol:g}")


def run_classifier_parity(reference: Callable[[np.ndarray], np.ndarray], onnx_run: Callable[[np.ndarray], np.ndarray],
                          cases: Sequence[tuple[str, np.ndarray]], tolerances: Tolerances = TOLERANCES) -> ParityReport:
    """Compare logits of two runners on uint8 batches [N, H, W, 3]."""
    report = ParityReport("classifier parity (onnxruntime vs PyTorch)", {"logits atol": tolerances.logits_atol})
    for name, batch in cases:
        report.cases.append(compare_logits(name, batch, reference(batch), onnx_run(batch), tolerances))
    return report


# ---- detectors ---------------------------------------------------------------------------------------------
#: What both sides of a detector comparison return: ``boxes`` [N, 4], ``labels`` [N], ``scores`` [N].
DetectionArrays = dict[str, np.ndarray]


def compare_detections(name: str, image_shape: Sequence[int], reference: DetectionArrays, onnx_out: DetectionArrays,
                       tolerances: Tolerances = TOLERANCES) -> ParityCase:
    """Same count and labels, boxes and scores within tolerance; detections are paired by order, and by
    nearest same-label box where near-equal scores swapped places."""
    box_atol, score_atol = tolerances.box_atol, tolerances.score_atol
    n_ref, n_out = len(reference["scores"]), len(onnx_out["scores"])
    figures: dict[str, Any] = {"image": "x".join(map(str, image_shape)), "torch dets": n_ref, "onnx dets": n_out}
    if n_ref != n_out:
        return ParityCase(name, False, figures, f"{n_out} detections in onnxruntime, {n_ref} in PyTorch")
    order = _pair(reference, onnx_out, tolerances)
    if order is None:
        return ParityCase(name, False, figures, "labels differ")
    box_diff = float(np.abs(reference["boxes"] - onnx_out["boxes"][order]).max()) if n_ref else 0.0
    score_diff = float(np.abs(reference["scores"] - onnx_out["scores"][order]).max()) if n_ref else 0.0
    figures.update({"max box diff": box_diff, "max score diff": score_diff})
    problems = ([f"box diff {box_diff:.3g} > {box_atol:g}"] if box_diff > box_atol else []) + \
               ([f"score diff {score_diff:.3g} > {score_atol:g}"] if score_diff > score_atol else [])
    return ParityCase(name, not problems, figures, "; ".join(problems))


def _pair(reference: DetectionArrays, onnx_out: DetectionArrays, tolerances: Tolerances) -> np.ndarray | None:
    """Index into ``onnx_out`` for each reference detection, or None when the labels cannot be matched."""
    n = len(reference["labels"])
    if np.array_equal(reference["labels"], onnx_out["labels"]):
        same_order = np.arange(n)
        if n == 0 or np.abs(reference["boxes"] - onnx_out["boxes"]).max() <= tolerances.box_atol:
            return same_order
    free = np.ones(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    score_weight = tolerances.box_atol / tolerances.score_atol  # a score tolerance costs as much as a box one
    for i in range(n):
        candidates = np.flatnonzero(free & (onnx_out["labels"] == reference["labels"][i]))
        if not len(candidates):
            return None
        cost = np.abs(onnx_out["boxes"][candidates] - reference["boxes"][i]).max(1) + \
            np.abs(onnx_out["scores"][candidates] - reference["scores"][i]) * score_weight
        j = candidates[cost.argmin()]
        order[i], free[j] = j, False
    return order


def run_detector_parity(reference: Callable[[Any], DetectionArrays], onnx_run: Callable[[Any], DetectionArrays],
                        cases: Sequence[tuple[str, Any]], tolerances: Tolerances = TOLERANCES,
                        title: str = "detector parity (onnxruntime vs PyTorch)") -> ParityReport:
    """Compare the detections of two runners on each case's input (an HWC uint8 image, or whatever both take:
    detectron2 graphs take CHW float images). The report shows the spatial size of each input."""
    report = ParityReport(title, {"box atol (px)": tolerances.box_atol, "score atol": tolerances.score_atol})
    for name, image in cases:
        report.cases.append(compare_detections(name, _spatial_shape(image), reference(image), onnx_run(image),
                                               tolerances))
    return report


def _spatial_shape(image: Any) -> tuple[int, int]:
    """(H, W) of an HWC image (last axis 3) or a CHW one."""
    shape = tuple(int(s) for s in image.shape)
    return shape[:2] if shape[-1] == 3 else shape[-2:]


# ---- built-in test images ----------------------------------------------------------------------------------
def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image: smooth colour blobs, gradients and some texture."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(height // 24, 2), max(width // 24, 2), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    texture = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    return np.clip(smooth + ramp + texture, 0, 255).astype(np.uint8)


def blank_image(height: int, width: int, value: int = 114) -> np.ndarray:
    """A uniform grey image: nothing to detect."""
    return np.full((height, width, 3), value, dtype=np.uint8)


def builtin_classifier_cases(input_size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Batches at the model's size, larger, smaller and non-square, and a batch of several images."""
    h, w = input_size
    sizes = [("native size", (h, w)), ("larger, landscape", (h + 93, 2 * w + 5)),
             ("smaller, portrait", (max(h // 2, 8) + 3, max(w // 3, 8))), ("blank", None)]
    cases = []
    for i, (name, size) in enumerate(sizes):
        image = blank_image(h, w) if size is None else synthetic_image(*size, seed=i)
        cases.append((name, image[None]))
    cases.append(("batch of 3", np.stack([synthetic_image(h + 11, w + 7, seed=10 + i) for i in range(3)])))
    return cases


def builtin_detector_cases() -> list[tuple[str, np.ndarray]]:
    """Landscape, portrait, small and odd sizes, and a blank image (nothing to detect)."""
    return [("landscape 480x640", synthetic_image(480, 640, seed=1)),
            ("portrait 640x427", synthetic_image(640, 427, seed=2)),
            ("small 150x200", synthetic_image(150, 200, seed=3)),
            ("odd 333x517", synthetic_image(333, 517, seed=4)),
            ("blank 480x640", blank_image(480, 640))]
