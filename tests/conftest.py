"""Shared test fixtures: the real test data location, the TF-slim oracle and small helpers."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

import tf_oracle
from embedded_data import write_digits_as_cifar

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "tf-slim"


#: Why tests of real COCO / CIFAR photos skip in a plain clone (CI refuses this skip: .ci/allowed_skips.txt).
NO_TEST_DATA = "needs the real test data: NASNET_ZOO_TEST_DATA is not set (.ci/run sets it to ../shared/data)"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Root of the real test data (``NASNET_ZOO_TEST_DATA``); tests that need it skip when it is unset."""
    root = os.environ.get("NASNET_ZOO_TEST_DATA")
    if not root:
        pytest.skip(NO_TEST_DATA)
    path = Path(root)
    if not path.is_dir():
        pytest.fail(f"NASNET_ZOO_TEST_DATA={root} is not a folder")
    return path


def _data_folder(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"{path} is missing: NASNET_ZOO_TEST_DATA must hold coco-tiny/ and cifar-10-subset/")
    return path


@pytest.fixture(scope="session")
def coco_tiny(test_data: Path) -> Path:
    return _data_folder(test_data / "coco-tiny")


@pytest.fixture(scope="session")
def cifar_dir(test_data: Path) -> Path:
    return _data_folder(test_data / "cifar-10-subset" / "cifar-10-batches-py")


@pytest.fixture(scope="session")
def cifar_or_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10-layout folder of real images: the cifar-10-subset where NASNET_ZOO_TEST_DATA is set (CI),
    else scikit-learn's bundled digit scans in that layout, so a plain clone runs the test too."""
    root = os.environ.get("NASNET_ZOO_TEST_DATA")
    if root:
        return _data_folder(Path(root) / "cifar-10-subset" / "cifar-10-batches-py")
    return write_digits_as_cifar(tmp_path_factory.mktemp("digits") / "cifar-10-batches-py", train=1500, test=290)


def no_full_tf_fixture(path: Path) -> str:
    """Why the full-TF-fixture extras skip (CI refuses this skip)."""
    return (f"full TF-slim fixture not found at {path} (set NASNET_ZOO_TF_FIXTURES; the compact copy in "
            "tests/fixtures is checked without it)")


@pytest.fixture(scope="session")
def tf_fixtures() -> Path:
    """The full TF-slim fixture (``../shared/fixtures/tf-slim``), an extra beside the compact copy in
    tests/fixtures; its tests skip when this checkout has no shared/ beside it (CI has it)."""
    path = Path(os.environ.get("NASNET_ZOO_TF_FIXTURES", FIXTURES))
    if not (path / "nasnet_a_mobile_tf_random.npz").is_file():
        pytest.skip(no_full_tf_fixture(path))
    return path


@pytest.fixture(scope="session")
def tf_mobile() -> tf_oracle.MobileOracle:
    """TF-slim's NASNet-A Mobile run from the compact oracle in tests/fixtures (never skips: it ships)."""
    return tf_oracle.load_mobile()


@pytest.fixture(scope="session")
def tf_mobile_npz(tf_mobile: tf_oracle.MobileOracle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The oracle's variables, input and logits as an .npz in the full fixture's format (``var/...``)."""
    return tf_mobile.write_npz(tmp_path_factory.mktemp("tf_slim") / "nasnet_a_mobile_tf_random.npz")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test) every worker already has a core: one intra-op thread each, so that the
    workers' thread pools do not fight over the same cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


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
