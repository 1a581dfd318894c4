"""Fail CI when pytest skipped a test for a reason not on the allow-list, or produced no usable report.

Usage: python .ci/check_skips.py JUNIT_XML ALLOWED_SKIPS_TXT

Reads the JUnit XML that pytest wrote (``--junitxml``), lists every skip with its reason, and exits 1 if one
matches no line of the allow-list (Python regexes, ``#`` comments), if no test ran, or if the report is missing
(pytest crashed or was interrupted before writing it). Exit 0 otherwise; failures are make's job to report.
Hand-written (stdlib xml) because it is a dozen lines and CI must not need more packages than the tests.
"""
from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def allowed_patterns(path: Path) -> list[re.Pattern[str]]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [re.compile(line) for line in lines if line and not line.startswith("#")]


def skip_reason(skipped: ET.Element) -> str:
    """The reason a test or a whole module (``pytest.importorskip`` at import: "collection skipped") skipped."""
    reason = skipped.get("message", "")
    if reason == "collection skipped":  # the text is repr((file, line, reason))
        try:
            reason = str(ast.literal_eval(skipped.text or "")[2])
        except (ValueError, SyntaxError, IndexError, TypeError):
            reason = skipped.text or reason
    return reason.removeprefix("Skipped: ")


def skips(report: Path) -> tuple[int, list[tuple[str, str]]]:
    """(number of test cases, [(test id, skip reason)])."""
    root = ET.parse(report).getroot()
    cases = list(root.iter("testcase"))
    found = []
    for case in cases:
        for skipped in case.findall("skipped"):
            test = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
            found.append((test, skip_reason(skipped)))
    return len(cases), found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    report, allow_file = Path(argv[0]), Path(argv[1])
    if not report.is_file():
        print(f"check_skips: pytest wrote no report at {report}: it crashed, was interrupted or never started",
              file=sys.stderr)
        return 1
    patterns = allowed_patterns(allow_file)
    total, found = skips(report)
    if total == 0:
        print("check_skips: the report holds no test at all", file=sys.stderr)
        return 1
    refused = [(t, r) for t, r in found if not any(p.search(r) for p in patterns)]
    for test, reason in found:
        print(f"check_skips: {'REFUSED' if (test, reason) in refused else 'allowed'} skip {test}: {reason}")
    if refused:
        print(f"check_skips: {len(refused)} of {total} tests skipped for reasons not in {allow_file}; "
              "provide what they need (data, fixtures, packages) or, if the skip is legitimate, add a narrow "
              "pattern there with the reason", file=sys.stderr)
        return 1
    print(f"check_skips: {total} tests, {len(found)} skipped, all for allowed reasons")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
