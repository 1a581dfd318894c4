"""Rebuild the compact TF-slim oracle (tests/fixtures/tf_slim) from the full fixture, and prove it faithful.

Usage: python tools/make_tf_fixture.py [--full ../shared/fixtures/tf-slim] [--out tests/fixtures/tf_slim]

Before writing anything it checks that what the tests regenerate is the full fixture's, bit for bit: the
1126 variables redrawn from their list, the two photos from their uint8 pixels, every op case's input and
kernels. After writing it reloads the compact files the way the tests do and checks every stored value
against the full arrays. The layout is described in tests/tf_oracle.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

import tf_oracle as oracle  # noqa: E402
from nasnet_zoo.utils.io import atomic_open, atomic_write_text  # noqa: E402

MAX_BYTES = 3 * 1024 * 1024


def _same(name: str, ours: np.ndarray, full: np.ndarray) -> None:
    if ours.dtype != full.dtype or ours.shape != full.shape or not np.array_equal(ours, full):
        raise SystemExit(f"error: regenerated {name} differs from the full fixture's")


def _uint8_photos(images: np.ndarray) -> np.ndarray:
    pixels = np.rint((images.astype(np.float64) + 1.0) * 127.5)
    if pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit("error: the fixture input is not uint8 pixels scaled to [-1, 1]")
    pixels = pixels.astype(np.uint8)
    _same("input (from uint8 pixels)", np.float32(pixels) / 127.5 - 1, images)
    return pixels


def build(full: Path, out: Path) -> None:
    meta = json.loads((full / "nasnet_a_mobile_tf_random_meta.json").read_text())
    spec = oracle.nasnet_variable_spec(meta)
    variables = oracle.random_variables(spec)
    stored: dict[str, np.ndarray] = {}
    with np.load(full / "nasnet_a_mobile_tf_random.npz") as data:
        listed = [k for k in data.files if k.startswith("var/")]
        if sorted(listed) != sorted(variables):
            raise SystemExit("error: the meta json's variable list is not the npz's")
        for name, value in variables.items():
            _same(name, value, data[name])
        stored["images_uint8"] = _uint8_photos(data["input"])
        stored["variables_sha256"] = np.asarray(oracle.variables_sha256(variables))
        for name in oracle.END_POINTS:
            key = f"endpoint/{name}"
            source = data["logits"] if name == "Logits" else data[key]
            stored.update(oracle.compact(key, source, oracle.RING_BUDGET, full_up_to=0))
    ops: dict[str, np.ndarray] = {}
    with np.load(full / "tf_same_ops.npz") as data:
        cases = oracle.random_op_cases()
        if {k.rsplit("/", 1)[0] for k in data.files} != set(cases):
            raise SystemExit("error: the op cases are not the ones tests/tf_oracle.py redraws")
        for key, case in cases.items():
            for part, value in case.items():
                _same(f"{key}/{part}", value, data[f"{key}/{part}"])
            ops.update(oracle.compact(f"{key}/out", data[f"{key}/out"], None, oracle.FULL_UP_TO))

    atomic_write_text(out / oracle.VARIABLES_FILE, json.dumps(spec, separators=(",", ":")) + "\n")
    for name, arrays in ((oracle.MODEL_FILE, stored), (oracle.OPS_FILE, ops)):
        with atomic_open(out / name, "wb") as f:
            np.savez_compressed(f, **arrays)
    for name in (oracle.VARIABLES_FILE, oracle.MODEL_FILE, oracle.OPS_FILE):
        (out / name).chmod(0o644)  # the atomic writer's temporary files are private; these are project files
    verify(full, out)


def verify(full: Path, out: Path) -> None:
    """Reload the compact copy as the tests do; every stored value must be the full fixture's."""
    mobile = oracle.load_mobile(out)
    with np.load(full / "nasnet_a_mobile_tf_random.npz") as data:
        _same("input", mobile.images, data["input"])
        for name, expected in mobile.end_points.items():
            tf_value = data["logits"] if name == "Logits" else data[f"endpoint/{name}"]
            if expected.max_diff(tf_value) != 0.0:
                raise SystemExit(f"error: compact end point {name} differs from the full fixture")
    with np.load(full / "tf_same_ops.npz") as data:
        for key, (_, expected) in oracle.load_op_cases(out).items():
            if expected.max_diff(data[f"{key}/out"]) != 0.0:
                raise SystemExit(f"error: compact op case {key} differs from the full fixture")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    total = sum(sizes.values())
    for name, size in sizes.items():
        print(f"{size / 1e6:7.3f} MB  {out / name}")
    print(f"{total / 1e6:7.3f} MB  in all (limit {MAX_BYTES / 1e6:.3f} MB); every stored value equals the full fixture")
    if total > MAX_BYTES:
        raise SystemExit("error: the compact fixture is over its size limit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", type=Path,
                        default=Path(os.environ.get("NASNET_ZOO_TF_FIXTURES", REPO.parent / "shared/fixtures/tf-slim")),
                        help="the full TF-slim fixture folder (default: $NASNET_ZOO_TF_FIXTURES or ../shared/...)")
    parser.add_argument("--out", type=Path, default=oracle.FIXTURE_DIR, help="where the compact copy goes")
    parser.add_argument("--check", action="store_true", help="only verify an existing compact copy")
    args = parser.parse_args(argv)
    if not (args.full / "nasnet_a_mobile_tf_random.npz").is_file():
        parser.error(f"{args.full} holds no nasnet_a_mobile_tf_random.npz; pass --full FOLDER")
    if args.check:
        verify(args.full, args.out)
    else:
        build(args.full, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
