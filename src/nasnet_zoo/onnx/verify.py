"""Parity between onnxruntime and PyTorch: per-case comparisons, a readable table, built-in test images."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

#: Classifier logits must agree this closely (absolute).
LOGITS_ATOL = 1e-4


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


def compare_logits(name: str, batch: np.ndarray, reference: np.ndarray, onnx_out: np.ndarray,
                   atol: float = LOGITS_ATOL) -> ParityCase:
    figures: dict[str, Any] = {"input": "x".join(map(str, batch.shape))}
    if reference.shape != onnx_out.shape:
        return ParityCase(name, False, figures, f"shape {onnx_out.shape} != {reference.shape}")
    diff = float(np.abs(reference - onnx_out).max()) if reference.size else 0.0
    figures["max |diff|"] = diff
    figures["top-1 equal"] = bool((reference.argmax(-1) == onnx_out.argmax(-1)).all())
    ok = diff <= atol and bool(np.isfinite(onnx_out).all())
    return ParityCase(name, ok, figures, "" if ok else f"max |diff| {diff:.3g} > {atol:g}")


def run_classifier_parity(reference: Callable[[np.ndarray], np.ndarray], onnx_run: Callable[[np.ndarray], np.ndarray],
                          cases: Sequence[tuple[str, np.ndarray]], atol: float = LOGITS_ATOL) -> ParityReport:
    """Compare logits of two runners on uint8 batches [N, H, W, 3]."""
    report = ParityReport("classifier parity (onnxruntime vs PyTorch)", {"logits atol": atol})
    for name, batch in cases:
        report.cases.append(compare_logits(name, batch, reference(batch), onnx_run(batch), atol))
    return report


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
