"""Shared test fixtures: the real test data location and small helpers."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "tf-slim"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Root of the real test data (``NASNET_ZOO_TEST_DATA``); tests that need it skip when it is unset."""
    root = os.environ.get("NASNET_ZOO_TEST_DATA")
    if not root:
        pytest.skip("NASNET_ZOO_TEST_DATA is not set (.ci/run sets it to ../shared/data)")
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"NASNET_ZOO_TEST_DATA={root} is not a folder")
    return path


@pytest.fixture(scope="session")
def coco_tiny(test_data: Path) -> Path:
    return test_data / "coco-tiny"


@pytest.fixture(scope="session")
def cifar_dir(test_data: Path) -> Path:
    return test_data / "cifar-10-subset" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def tf_fixtures() -> Path:
    """TF-slim's own outputs (``../shared/fixtures/tf-slim``); skip when this checkout has no shared/ beside it."""
    path = Path(os.environ.get("NASNET_ZOO_TF_FIXTURES", FIXTURES))
    if not (path / "nasnet_a_mobile_tf_random.npz").is_file():
        pytest.skip(f"TF-slim fixtures not found at {path} (set NASNET_ZOO_TF_FIXTURES)")
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for tests of many tiny ops: oversubscribed threads make them several times slower
    on a 2-core machine, especially next to worker subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_seed() -> None:
    torch.manual_seed(0)
