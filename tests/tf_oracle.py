"""The TF-slim oracle that ships with the tests (``tests/fixtures/tf_slim``, about 1.5 MB).

TensorFlow's own outputs for NASNet-A Mobile and for TF's "SAME" ops, compacted from the full fixture
(``../shared/fixtures/tf-slim``, 77 MB, described by its README) by ``tools/make_tf_fixture.py``, which also
proves the compact copy equals the full one. Only what cannot be regenerated is stored:

- **Weights: none.** The full fixture's 1126 variables were drawn with ``default_rng(0)`` in graph order, the
  distribution chosen by the last name component; ``random_variables`` redraws them from the variable list
  (``nasnet_a_mobile_variables.json``: names, shapes, order). The tool checks the redrawn values equal the full
  fixture's bit for bit, and the sha256 of their bytes is stored so a clone checks them too.
- **Input photos** as the uint8 pixels after PIL's bilinear resize to 224x224; ``float32(u) / 127.5 - 1``
  equals TF's input bit for bit (checked by the tool). JPEG files would depend on the decoder's version.
- **Logits, global_pool and Predictions** in full.
- **Every 4-D end point** at a seeded sample of positions (``sample_index``): the whole border ring (first and
  last row and column) for a seeded choice of channels, plus seeded random positions anywhere. A padding
  error shows first at the borders of the map it enters and then everywhere downstream.
- **Op cases:** inputs and kernels are redrawn with ``default_rng(1)`` in the README's order (checked bit for bit
  by the tool); outputs are stored in full up to ``FULL_UP_TO`` values, larger ones sampled the same way with
  every channel on the ring.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "tf_slim"
MODEL_FILE = "nasnet_a_mobile.npz"
VARIABLES_FILE = "nasnet_a_mobile_variables.json"
OPS_FILE = "tf_same_ops.npz"

END_POINTS = (["conv0_bn", "cell_stem_0", "Stem"] + [f"Cell_{i}" for i in range(4)] + ["Reduction_Cell_0"]
              + [f"Cell_{i}" for i in range(4, 8)] + ["Reduction_Cell_1"] + [f"Cell_{i}" for i in range(8, 12)]
              + ["global_pool", "Logits", "Predictions"])
SIZES = (7, 8, 21, 42, 83, 111, 112)
OPS = ("avg_k3_s1", "avg_k3_s2", "max_k3_s1", "max_k3_s2", "dw_k3_s1", "dw_k3_s2", "dw_k5_s1", "dw_k5_s2",
       "dw_k7_s1", "dw_k7_s2", "sep_k5_s2", "conv_k3_s2_valid", "frpath1_s2", "frpath2_s2")

SAMPLE_SEED = 20180101
RING_BUDGET = 6144      # border values per end point (channels are chosen to fit); op cases keep every channel
RANDOM_POSITIONS = 2048  # extra random positions per sampled array
FULL_UP_TO = 4096        # op outputs up to this many values are stored whole


def random_variables(spec: list[tuple[str, list[int]]]) -> dict[str, np.ndarray]:
    """The full fixture's weights, redrawn: ``{"var/<tf name>": float32 array}`` in graph order."""
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in spec:
        last = name.rsplit("/", 1)[-1]
        if last in ("weights", "pointwise_weights"):
            values = rng.normal(0.0, np.sqrt(1.0 / np.prod(shape[:-1])), shape)
        elif last == "depthwise_weights":
            values = rng.normal(0.0, np.sqrt(1.0 / (shape[0] * shape[1])), shape)
        elif last == "gamma":
            values = rng.uniform(0.5, 1.5, shape)
        elif last in ("beta", "moving_mean", "biases"):
            values = rng.normal(0.0, 0.1, shape)
        elif last == "moving_variance":
            values = rng.uniform(0.5, 2.0, shape)
        else:
            raise ValueError(f"no drawing rule for TF variable {name!r}")
        out[f"var/{name}"] = values.astype(np.float32)
    return out


def variables_sha256(variables: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name, value in variables.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def random_op_cases() -> dict[str, dict[str, np.ndarray]]:
    """Every op case's input and kernels, redrawn: ``{"avg_k3_s2_h42": {"in": ..., "kernel": ...}}``."""
    rng = np.random.default_rng(1)
    f32 = np.float32
    cases = {}
    for size in SIZES:
        for op in OPS:
            case = {"in": rng.standard_normal((2, size, size, 4)).astype(f32)}
            if op.startswith("dw_"):
                k = int(op[4])
                case["kernel"] = rng.normal(0.0, np.sqrt(1.0 / k ** 2), (k, k, 4, 1)).astype(f32)
            elif op == "sep_k5_s2":
                case["depthwise_kernel"] = rng.normal(0.0, 1.0 / 5, (5, 5, 4, 1)).astype(f32)
                case["pointwise_kernel"] = rng.normal(0.0, 0.5, (1, 1, 4, 4)).astype(f32)
            elif op == "conv_k3_s2_valid":
                case["kernel"] = rng.normal(0.0, np.sqrt(1.0 / 36), (3, 3, 4, 4)).astype(f32)
            cases[f"{op}_h{size}"] = case
    return cases


def sample_index(shape: tuple[int, ...], key: str, ring_budget: int | None = RING_BUDGET) -> np.ndarray:
    """Sorted flat indices into an NHWC array: the border ring of some channels plus random positions.

    ``ring_budget=None`` puts every channel on the ring. The choice depends only on the shape and ``key``.
    """
    n, h, w, c = shape
    rng = np.random.default_rng([SAMPLE_SEED, zlib.crc32(key.encode())])
    ys, xs = np.nonzero(np.pad(np.zeros((h - 2, w - 2), bool), 1, constant_values=True))
    count = c if ring_budget is None else min(c, max(1, ring_budget // (n * len(ys))))
    channels = np.sort(rng.choice(c, count, replace=False))
    pixels = ((np.arange(n)[:, None] * h + ys[None]) * w + xs[None]).reshape(-1)
    ring = (pixels[:, None] * c + channels[None]).reshape(-1)
    total = n * h * w * c
    extra = rng.choice(total, min(RANDOM_POSITIONS, total), replace=False)
    return np.unique(np.concatenate([ring, extra]))


@dataclass(frozen=True)
class Expected:
    """TF's value of one array: whole (``index`` is None) or at the flat positions ``index``."""

    shape: tuple[int, ...]
    values: np.ndarray
    index: np.ndarray | None = None

    def max_diff(self, got: np.ndarray) -> float:
        """Largest |got - TF| over the stored positions; a wrong shape is an error, not a broadcast."""
        got = np.asarray(got)
        if got.shape != self.shape:
            raise AssertionError(f"shape {got.shape} differs from TF's {self.shape}")
        picked = got.reshape(-1) if self.index is None else got.reshape(-1)[self.index]
        return float(np.abs(picked.astype(np.float64) - self.values.reshape(-1)).max())


def _expected(data: np.lib.npyio.NpzFile, key: str, ring_budget: int | None) -> Expected:
    shape = tuple(int(s) for s in data[f"{key}/shape"])
    if f"{key}/full" in data.files:
        return Expected(shape, data[f"{key}/full"])
    return Expected(shape, data[f"{key}/sampled"], sample_index(shape, key, ring_budget))


def compact(key: str, value: np.ndarray, ring_budget: int | None, full_up_to: int) -> dict[str, np.ndarray]:
    """The stored form of one TF array (the inverse of ``_expected``)."""
    out = {f"{key}/shape": np.asarray(value.shape, np.int64)}
    if value.ndim != 4 or value.size <= full_up_to:
        out[f"{key}/full"] = value
    else:
        out[f"{key}/sampled"] = value.reshape(-1)[sample_index(value.shape, key, ring_budget)]
    return out


@dataclass
class MobileOracle:
    """TF-slim's NASNet-A Mobile run: regenerated variables, the two photos, TF's end points."""

    variables: dict[str, np.ndarray]
    images: np.ndarray            # [2, 224, 224, 3] float32 in [-1, 1], as fed to TF
    end_points: dict[str, Expected]

    @property
    def logits(self) -> np.ndarray:
        return self.end_points["Logits"].values

    @property
    def pixels(self) -> np.ndarray:
        """The two COCO photos as uint8 [2, 224, 224, 3] (RGB), for tests that want real photos."""
        return np.rint((self.images.astype(np.float64) + 1.0) * 127.5).astype(np.uint8)

    def write_npz(self, path: Path) -> Path:
        """The full fixture's file format (``var/``, ``input``, ``logits``), for tools that take a weight file."""
        np.savez(path, input=self.images, logits=self.logits, **self.variables)
        return path


def load_mobile(folder: Path = FIXTURE_DIR) -> MobileOracle:
    spec = json.loads((folder / VARIABLES_FILE).read_text())
    variables = random_variables(spec)
    with np.load(folder / MODEL_FILE) as data:
        stored = str(data["variables_sha256"])
        if variables_sha256(variables) != stored:
            raise AssertionError(f"the weights redrawn from {VARIABLES_FILE} are not the fixture's (sha256 "
                                 f"{variables_sha256(variables)} != {stored}): numpy's default_rng stream changed?")
        images = np.float32(data["images_uint8"]) / 127.5 - 1
        points = {name: _expected(data, f"endpoint/{name}", RING_BUDGET) for name in END_POINTS}
    return MobileOracle(variables, images, points)


def load_op_cases(folder: Path = FIXTURE_DIR) -> dict[str, tuple[dict[str, np.ndarray], Expected]]:
    """``{case: (inputs and kernels, TF's output)}`` for every op and size."""
    cases = random_op_cases()
    with np.load(folder / OPS_FILE) as data:
        return {key: (case, _expected(data, f"{key}/out", None)) for key, case in cases.items()}


def nasnet_variable_spec(meta: dict) -> list[tuple[str, list[int]]]:
    """(name, shape) in graph order from the full fixture's meta json."""
    return [(name, list(shape)) for name, shape, _trainable in meta["variables"]]
