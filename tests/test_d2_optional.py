"""detectron2 stays optional: only nasnet_zoo.detection.d2 imports it when loaded; the ONNX export of detectron2
models (nasnet_zoo.onnx.d2) imports it only when called."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nasnet_zoo"
D2_PACKAGE = PACKAGE / "detection" / "d2"


def load_time_detectron2_imports(path: Path) -> list[int]:
    """Lines that import detectron2 when the module loads (not inside functions or ``if TYPE_CHECKING:``)."""
    lines: list[int] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(n.split(".")[0] == "detectron2" for n in names):
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return lines


def test_only_the_d2_package_imports_detectron2() -> None:
    offenders = {str(f.relative_to(PACKAGE)): lines for f in PACKAGE.rglob("*.py")
                 if (lines := load_time_detectron2_imports(f)) and D2_PACKAGE not in f.parents}
    assert not offenders, f"detectron2 imported outside nasnet_zoo.detection.d2: {offenders}"
    assert load_time_detectron2_imports(D2_PACKAGE / "backbone.py"), "the check must see the d2 imports"


def test_d2_export_without_detectron2_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "detectron2", None)  # as if it were not installed
    from nasnet_zoo.onnx import export_d2_detector
    with pytest.raises(ImportError, match="docs/detectron2.md"):
        export_d2_detector(torch.nn.Identity(), torch.zeros(3, 32, 32), "unused.onnx")
