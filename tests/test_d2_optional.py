"""detectron2 stays optional: only nasnet_zoo.detection.d2 imports it."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def detectron2_imports(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(n.split(".")[0] == "detectron2" for n in names):
            lines.append(node.lineno)
    return lines


def test_only_the_d2_package_imports_detectron2() -> None:
    files = [*(REPO / "nasnet_zoo").rglob("*.py"), *(REPO / "detection").rglob("*.py"),
             *(REPO / "pretrained").rglob("*.py")]
    offenders = {str(f.relative_to(REPO)): lines for f in files
                 if (lines := detectron2_imports(f)) and (REPO / "detection" / "d2") not in f.parents}
    assert not offenders, f"detectron2 imported outside nasnet_zoo.detection.d2: {offenders}"
    assert detectron2_imports(REPO / "detection" / "d2" / "backbone.py"), "the check must see the d2 imports"
