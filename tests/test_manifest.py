"""The shipped weight manifest (nasnet_zoo/pretrained/manifest.json): every published entry can be verified,
or says why it cannot."""
from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

ENTRIES = json.loads((files("nasnet_zoo.pretrained") / "manifest.json").read_text(encoding="utf-8"))["weights"]


def test_the_manifest_publishes_weights() -> None:
    assert len(ENTRIES) >= 5 and len({e["name"] for e in ENTRIES}) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_every_entry_has_a_hash_or_an_explicit_reason(entry: dict) -> None:
    """A full sha256, or ``sha256_unavailable`` saying why not (``sha256`` then holds the published prefix or
    null); the loader refuses anything else, and this keeps the shipped file from relying on that."""
    sha, reason = entry.get("sha256"), (entry.get("sha256_unavailable") or "").strip()
    assert sha is None or re.fullmatch(r"[0-9a-f]{8,64}", sha), f"{entry['name']}: sha256 {sha!r} is not hex"
    if sha is None or len(sha) < 64:
        assert len(reason) >= 20, f"{entry['name']}: no full sha256 ({sha!r}) and no sha256_unavailable reason"
