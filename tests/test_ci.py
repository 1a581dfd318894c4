"""CI's skip gate: .ci/check_skips.py reads pytest's JUnit report and refuses skips not on the allow-list.

Losing the full TF fixture, the real data or a reference package must turn CI red; detectron2 missing must not.
The report is made by a real pytest run (a child process) so a change in pytest's format shows here.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import NO_TEST_DATA, no_full_tf_fixture

REPO = Path(__file__).resolve().parents[1]
ALLOWED = REPO / ".ci" / "allowed_skips.txt"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_skips", REPO / ".ci" / "check_skips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def allowed(checker, reason: str) -> bool:
    return any(p.search(reason) for p in checker.allowed_patterns(ALLOWED))


def test_allow_list_refuses_skips_that_lose_evidence(checker) -> None:
    assert not allowed(checker, NO_TEST_DATA)
    assert not allowed(checker, no_full_tf_fixture(Path("/nowhere")))
    for package in ("timm", "pretrainedmodels", "onnxruntime", "ray"):
        with pytest.raises(pytest.skip.Exception) as skipped:
            pytest.importorskip(f"{package}_is_not_here")
        assert not allowed(checker, str(skipped.value.msg)), package
    assert allowed(checker, "detectron2 is not installed; build it from source (docs/detectron2.md)")


def report_of(tmp_path: Path, body: str) -> Path:
    """Run pytest on a throwaway test file (outside this project's config) and return its JUnit report."""
    (tmp_path / "test_throwaway.py").write_text(textwrap.dedent(body))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path)],
                   capture_output=True, cwd=tmp_path, timeout=120)
    return report


def test_checker_refuses_an_unlisted_skip_and_passes_listed_ones(checker, tmp_path, capsys) -> None:
    report = report_of(tmp_path, f"""
        import pytest
        def test_runs(): pass
        def test_needs_detectron2():
            pytest.importorskip("detectron2_missing", reason="detectron2 is not installed; build it from source")
        def test_needs_data():
            pytest.skip({NO_TEST_DATA!r})
    """)
    assert checker.main([str(report), str(ALLOWED)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED skip test_throwaway::test_needs_data: needs the real test data" in out
    assert "allowed skip test_throwaway::test_needs_detectron2: detectron2 is not installed" in out


def test_checker_sees_module_level_skips(checker, tmp_path, capsys) -> None:
    report = report_of(tmp_path, """
        import pytest
        timm = pytest.importorskip("timm_is_not_here")
        def test_never_collected(): pass
    """)
    assert checker.main([str(report), str(ALLOWED)]) == 1
    assert "REFUSED skip" in capsys.readouterr().out


def test_checker_passes_a_clean_run_and_fails_without_a_report(checker, tmp_path, capsys) -> None:
    report = report_of(tmp_path, """
        def test_runs(): pass
    """)
    assert checker.main([str(report), str(ALLOWED)]) == 0
    assert checker.main([str(tmp_path / "missing.xml"), str(ALLOWED)]) == 1
    assert "wrote no report" in capsys.readouterr().err
