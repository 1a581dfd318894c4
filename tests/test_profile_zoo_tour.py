"""The zoo tour of ``make demo`` (tools/demo.py) runs offline on a real photo and writes what it prints."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def load_demo():  # noqa: ANN201  (tools/ is not a package)
    spec = importlib.util.spec_from_file_location("nasnet_zoo_demo", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_zoo_tour_offline(coco_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NASNET_ZOO_OFFLINE", "1")
    monkeypatch.setenv("NASNET_ZOO_HOME", str(tmp_path / "empty-cache"))
    summary = load_demo().zoo_tour(tmp_path / "demo")
    out = capsys.readouterr().out
    assert "5,289,978" in out and "563,638,816" in out and "23,783,414,658" in out
    assert "COCO val2017" in summary["photo"] and summary["weights"] == "random (untrained)"
    assert [m["stride"] for m in summary["feature_maps"]] == [2, 4, 8, 16, 32]
    assert [m["shape"][1] for m in summary["feature_maps"]] == [32, 44, 264, 528, 1056]
    for name in ("feature_maps.png", "nasnet_a_cells.png"):
        with Image.open(tmp_path / "demo" / name) as image:
            assert image.width > 300 and image.height > 200
    assert json.loads((tmp_path / "demo" / "zoo_tour.json").read_text())["backbone"] == "nasnet_a_mobile"
