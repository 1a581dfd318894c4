"""``make demo``'s console: the export step in three lines of figures, and a missing extra in one line."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_demo():  # noqa: ANN201  (tools/ is not a package)
    spec = importlib.util.spec_from_file_location("nasnet_zoo_demo_console", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_parity_summary_gives_the_figures_in_three_lines() -> None:
    case = {"ok": True, "problem": "", "image": "128x128"}
    report = {"parity": {"ok": True, "cases": [
        {"name": "image 0", **case, "torch dets": 9, "max box diff": 1.5e-5, "max score diff": 2e-6},
        {"name": "image 1", **case, "torch dets": 2, "max box diff": 3e-5, "max score diff": 1e-7},
        {"name": "blank 480x640", **case, "torch dets": 0, "max box diff": 0.0, "max score diff": 0.0}]},
        "speed": {"pytorch_eager_ms": 46.6, "onnxruntime_ms": 18.2, "speedup": 2.56, "torch_threads": 1}}
    lines = load_demo().parity_summary(report).splitlines()
    assert len(lines) == 3
    assert lines[0] == "  parity PASS: 3 cases (2 val images with 2-9 detections, 1 built-in: other sizes, a blank image)"
    assert "max box difference 3e-05 px" in lines[1] and "onnxruntime 18.2 ms (2.56x)" in lines[2]
    report["parity"]["ok"] = False
    assert "parity FAIL" in load_demo().parity_summary(report)


def test_demo_without_its_extra_stops_with_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    demo = load_demo()
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    assert demo.main(["--output-dir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err == "error: The demo needs the 'demo' extra (pycocotools is not installed): pip install 'nasnet-zoo[demo]'\n"
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("flag", [[], ["--verbose"]])
def test_verbose_is_passed_to_the_programs(monkeypatch, tmp_path: Path, flag: list[str]) -> None:
    demo = load_demo()
    calls = []
    monkeypatch.setattr(demo, "run_tool", lambda script, *args, **kw: calls.append((script, args, kw)))
    demo.detection(tmp_path, verbose=bool(flag))
    assert calls == [("train_det.py", ("--output-dir", str(tmp_path), *flag), {})]
