"""Reliability of run folders: one writer per folder, the journal as the truth of a search, damaged journals,
bad detection images, a full disk while checkpointing, and loads that never run code from a file.

The lock tests start real processes (the three tools) and kill the holder with SIGKILL; the disk-full tests
make the atomic writer's file raise ENOSPC, as a full disk does, because a real full disk cannot be arranged
portably in a test.
"""
from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nasnet_zoo.search import SearchConfig, SearchRun
from nasnet_zoo.search.journal import REJECTED_NAME
from nasnet_zoo.search.state import STATE_NAME, load_search_state
from nasnet_zoo.utils import io as nio
from nasnet_zoo.utils.checkpoint import (CheckpointError, find_checkpoint, read_checkpoint, rng_state,
                                         save_checkpoint, set_rng_state)
from nasnet_zoo.utils.io import DiskFullError, read_jsonl
from nasnet_zoo.utils.run_lock import LOCK_NAME, RunFolderBusy, lock_run_folder

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the lock -------------------------------------------------------------------------------------------------
def _wait_for_holder(folder: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Until ``proc`` holds ``folder``'s lock (its pid is in the lock file)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the holder ended early: {proc.stderr.read() if proc.stderr else ''}"
        lock = folder / LOCK_NAME
        if lock.is_file() and f"pid {proc.pid} " in lock.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{proc.args} did not lock {folder} within {timeout} s")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _assert_refused(result: subprocess.CompletedProcess, folder: Path, holder: subprocess.Popen) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert f"run folder {folder} is in use by another process" in message
    assert f"pid {holder.pid} on host {socket.gethostname()}, started " in message
    assert "--resume" in message and "another --output-dir" in message


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom nasnet_zoo.utils.run_lock import "
                               "lock_run_folder\nlock = lock_run_folder(sys.argv[1])\ntime.sleep(600)", str(tmp_path)],
                              env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(tmp_path, holder)
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid} on host"):
            lock_run_folder(tmp_path)
    finally:
        _kill(holder)
    with lock_run_folder(tmp_path) as lock:  # at once: the kernel dropped the killed holder's lock
        assert lock.held and f"pid {os.getpid()} " in (tmp_path / LOCK_NAME).read_text()
    assert not lock.held
    assert lock_run_folder(tmp_path, enabled=False).held is False  # other torchrun ranks take no lock
    fresh = tmp_path / "fresh"
    with lock_run_folder(fresh):  # a run that fails before writing anything leaves no folder behind
        assert (fresh / LOCK_NAME).is_file()
    assert not fresh.exists()
    with lock_run_folder(fresh):
        (fresh / "metrics.jsonl").write_text("{}\n")
    assert sorted(p.name for p in fresh.iterdir()) == [LOCK_NAME, "metrics.jsonl"]


@pytest.mark.parametrize("reward", ["oracle", "proxy", "shared"])
def test_every_search_reward_takes_the_lock(tmp_path, fake_cifar, reward):
    from nasnet_zoo.search.runner import make_search
    out = tmp_path / "search"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom nasnet_zoo.utils.run_lock import "
                               "lock_run_folder\nlock = lock_run_folder(sys.argv[1])\ntime.sleep(600)", str(out)],
                              env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(out, holder)
        cfg = SearchConfig(reward=reward, data_dir=str(fake_cifar), children=4, output_dir=str(out))
        with pytest.raises(RunFolderBusy, match=f"run folder {out} is in use .*pid {holder.pid} on host"):
            make_search(cfg, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused search wrote nothing
    finally:
        _kill(holder)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_search_second_process_refused_and_resume_after_kill(tmp_path):
    out = tmp_path / "search"
    tool = [sys.executable, str(REPO / "tools" / "search.py"), "--no-progress", "--output-dir", str(out)]
    holder = subprocess.Popen([*tool, "--reward", "oracle", "--backend", "inline", "--children", "1000000"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(out, holder)
        while len(read_jsonl(out / "journal.jsonl")) < 30:
            time.sleep(0.05)
        second = subprocess.run([*tool, "--resume"], env=ENV, capture_output=True, text=True, timeout=120)
        _assert_refused(second, out, holder)
    finally:
        _kill(holder)
    target = len(read_jsonl(out / "journal.jsonl")) + 25
    resumed = subprocess.run([*tool, "--resume", "--children", str(target)], env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["index"] for r in read_jsonl(out / "journal.jsonl")] == list(range(target))


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory) -> Path:
    from test_train_cls import write_fake_cifar
    return write_fake_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", per_batch=16)


def _second_refused_then_resume(tool: list[str], overrides: list[str], out: Path, env: dict, limit: str,
                                finish_at: str, final: str) -> None:
    """A long run (``limit`` 100000) holds ``out``; a second process is refused; after kill -9 of the holder
    ``--resume`` with ``limit finish_at`` completes and writes ``final``. ``overrides`` are trailing KEY VALUE pairs."""
    holder = subprocess.Popen([*tool, limit, "100000", *overrides], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(out, holder)
        second = subprocess.run([*tool, "--resume", *overrides], env=env, capture_output=True, text=True,
                                timeout=120)
        _assert_refused(second, out, holder)
    finally:
        _kill(holder)
    resumed = subprocess.run([*tool, "--resume", limit, finish_at, *overrides], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / final).is_file()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_cls_second_process_refused_and_resume_after_kill(tmp_path, fake_cifar):
    from test_train_cls import TINY
    out = tmp_path / "cls"
    tool = [sys.executable, str(REPO / "tools" / "train_cls.py"), "--recipe", "cifar_cpu", "--data-dir",
            str(fake_cifar), "--output-dir", str(out)]
    _second_refused_then_resume(tool, TINY, out, ENV, "--max-steps", "2", "model_final.safetensors")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_det_second_process_refused_and_resume_after_kill(tmp_path):
    from test_det_engine import TINY
    out = tmp_path / "det"
    tool = [sys.executable, str(REPO / "tools" / "train_det.py"), "--output-dir", str(out)]
    _second_refused_then_resume(tool, TINY, out, {**ENV, "NASNET_ZOO_HOME": str(tmp_path / "home")}, "--max-iter",
                                "1", "model_final.pth")


# ---- the journal is the truth of a search -----------------------------------------------------------------------
def _oracle(out: Path, children: int) -> SearchConfig:
    return SearchConfig(reward="oracle", backend="inline", children=children, output_dir=str(out))


def _assert_same_strategy_state(rebuilt: dict, saved: dict) -> None:
    controller = saved["controller"]
    assert rebuilt["controller"].keys() == controller.keys()
    assert all(torch.equal(rebuilt["controller"][k], controller[k]) for k in controller)
    adam, adam_saved = rebuilt["optimizer"], saved["optimizer"]
    assert adam["param_groups"] == adam_saved["param_groups"] and adam["state"].keys() == adam_saved["state"].keys()
    for i, slots in adam_saved["state"].items():
        assert all(torch.equal(adam["state"][i][k], v) for k, v in slots.items())
    assert rebuilt["baseline"] == saved["baseline"] and rebuilt["updates"] == saved["updates"]
    assert rebuilt["buffer"] == saved["buffer"]


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated"])
def test_a_lost_search_state_is_rebuilt_from_the_journal(tmp_path, capsys, damage):
    out = tmp_path / "run"
    SearchRun(_oracle(out, 50), progress=False).run()
    SearchRun(_oracle(out, 70), resume=True, progress=False).run()  # a second session: the journal holds sessions 0, 1
    state_path = out / STATE_NAME
    saved = load_search_state(state_path)
    assert saved["strategy"]["updates"] == 3 and len(saved["strategy"]["buffer"]) == 10
    if damage == "missing":
        state_path.unlink()
    elif damage == "garbage":
        state_path.write_bytes(b"\x00garbage, not a zip archive")
    else:
        state_path.write_bytes(state_path.read_bytes()[:-200])

    run = SearchRun(_oracle(out, 90), resume=True, progress=False)
    message = capsys.readouterr().err
    assert "rebuilt the search state from the journal instead: replayed its 70 children" in message
    assert "3 policy updates" in message and str(state_path) in message
    _assert_same_strategy_state(run.strategy.state_dict(), saved["strategy"])
    assert run.resumes == 2  # a fresh sampling stream after sessions 0 and 1
    run.run()
    records = read_jsonl(out / "journal.jsonl")
    assert [r["index"] for r in records] == list(range(90))  # every child counted once
    final = load_search_state(state_path)
    assert final["observed"] == 90 and final["strategy"]["updates"] == 4


def _resume(out: Path, capsys, *extra: str) -> tuple[int, str]:
    import importlib.util
    spec = importlib.util.spec_from_file_location("search_cli", REPO / "tools" / "search.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    capsys.readouterr()
    code = cli.main(["--no-progress", "--output-dir", str(out), *extra])
    return code, capsys.readouterr().err


def test_a_damaged_journal_line_names_the_repair_which_keeps_every_good_line(tmp_path, capsys):
    out = tmp_path / "run"
    SearchRun(_oracle(out, 40), progress=False).run()
    journal = out / "journal.jsonl"
    original = journal.read_text().splitlines()
    lines = original[:10] + ['{"index": 10, "genotype": {"normal": [tor'] + original[10:]  # garbage at line 11
    journal.write_text("\n".join(lines) + "\n")

    code, err = _resume(out, capsys, "--resume")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert f"{journal}: line 11 is not valid JSON" in err
    assert f"python tools/search.py --output-dir {out} --repair-journal" in err

    code, _ = _resume(out, capsys, "--repair-journal")
    assert code == 0
    assert journal.read_text().splitlines() == original  # every good line kept, unchanged
    [rejected] = read_jsonl(out / REJECTED_NAME)
    assert rejected["line"] == 11 and rejected["text"] == lines[10] and "not valid JSON" in rejected["reason"]
    assert (out / STATE_NAME).is_file()  # nothing was renumbered: the checkpoint still describes the journal

    code, err = _resume(out, capsys, "--resume", "--children", "45")
    assert code == 0, err
    assert [r["index"] for r in read_jsonl(journal)] == list(range(45))


def test_repair_renumbers_after_a_lost_line_and_resume_rebuilds(tmp_path, capsys):
    out = tmp_path / "run"
    SearchRun(_oracle(out, 40), progress=False).run()
    journal = out / "journal.jsonl"
    lines = journal.read_text().splitlines()
    after_gap = json.loads(lines[21])
    lines[20] = "\x00\x00 disk garbage"
    lines[30] = json.dumps({"index": 30, "note": "a record without its fields"})
    journal.write_text("\n".join(lines) + "\n" + '{"index": 40, "genot')  # plus a torn last line
    code, _ = _resume(out, capsys, "--repair-journal")
    assert code == 0
    records = read_jsonl(journal)
    assert [r["index"] for r in records] == list(range(38))
    def content(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("index", "duplicate_of")}
    assert content(records[20]) == content(after_gap)  # the child after the lost line moved up, unchanged
    assert [r["line"] for r in read_jsonl(out / REJECTED_NAME)] == [21, 31, 41]
    assert not (out / STATE_NAME).exists() and (out / f"{STATE_NAME}.before-repair").is_file()
    for r in records:
        if "duplicate_of" in r:
            assert records[r["duplicate_of"]]["reward"] == r["reward"]

    code, err = _resume(out, capsys, "--resume", "--children", "50")
    assert code == 0, err
    assert "rebuilt the search state from the journal" in err
    assert [r["index"] for r in read_jsonl(journal)] == list(range(50))


# ---- a full disk while checkpointing ----------------------------------------------------------------------------
class _FullDisk(io.RawIOBase):
    """A file on a disk that fills up after ``room`` bytes: the write then fails with ENOSPC, as the kernel's does."""

    def __init__(self, path: str | Path, room: int) -> None:
        self.file, self.room = open(path, "wb"), room  # noqa: SIM115

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def close(self) -> None:
        self.file.close()
        super().close()


def _fill_disk_after(monkeypatch, room: int) -> None:
    real_open = open

    def opener(path, mode="r", *args, **kwargs):
        return _FullDisk(path, room) if "w" in mode and "b" in mode else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(nio, "open", opener, raising=False)


def test_disk_full_keeps_the_previous_checkpoint_and_says_where(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}, "step": 1})
    before = path.read_bytes()
    _fill_disk_after(monkeypatch, room=2000)
    with pytest.raises(DiskFullError) as error:
        save_checkpoint(path, {"model": {"w": torch.zeros(1000)}, "step": 2})
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert f"disk full while writing {path}" in message and "MiB free in" in message and str(tmp_path) in message
    assert "the previous checkpoint.pt is intact" in message
    assert path.read_bytes() == before and read_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_disk_full_in_a_training_run_stops_it_with_its_last_checkpoint_loadable(tmp_path, monkeypatch, fake_cifar):
    from nasnet_zoo.training import train
    from test_train_cls import tiny_config

    import nasnet_zoo.training.engine as engine
    saves = []
    real_save = engine.ckpt.save_checkpoint

    def save_then_fill(path, state):
        saves.append(state["step"])
        if len(saves) == 2:
            _fill_disk_after(monkeypatch, room=10_000)
        real_save(path, state)

    monkeypatch.setattr(engine.ckpt, "save_checkpoint", save_then_fill)
    cfg = tiny_config(fake_cifar, tmp_path / "run", "solver.max_steps", "4", "checkpoint_period", "1")
    with pytest.raises(DiskFullError, match=f"disk full while writing {tmp_path / 'run' / 'checkpoint.pt'}"):
        train(cfg)
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1


def test_disk_full_while_appending_a_journal_line(tmp_path, monkeypatch):
    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nio, "open", no_room, raising=False)
    with pytest.raises(DiskFullError, match="disk full while appending to .*journal.jsonl.*lines before are intact"):
        nio.append_jsonl(tmp_path / "journal.jsonl", {"index": 0})


# ---- loading never runs code from the file ----------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "model_name": "x", "num_classes": 2, "payload": _RunsCode(marker)},
               path)
    return path, marker


def _load_detector(path: Path) -> None:
    from nasnet_zoo.detection.modeling.trained import load_detector
    load_detector("fasterrcnn_nasnet_a_mobile_fpn", path)


def _load_backbone(path: Path) -> None:
    from nasnet_zoo import create_model
    from nasnet_zoo.detection.modeling.builders import _load_classifier_state
    _load_classifier_state(create_model("nasnet_a_cifar", num_classes=0, aux_head=False), path)


def _load_classifier(path: Path) -> None:
    from nasnet_zoo import create_model
    from nasnet_zoo.training.export import load_weights
    load_weights(create_model("nasnet_a_cifar"), path)


@pytest.mark.parametrize("loader", [read_checkpoint, _load_detector, _load_backbone, _load_classifier],
                         ids=["read_checkpoint", "detector", "backbone", "classifier"])
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(evil_checkpoint, loader):
    path, marker = evil_checkpoint
    with pytest.raises(CheckpointError, match=f"refused to load {path}: it holds Python objects .*system.* can run"):
        loader(path)
    assert not marker.exists()


def test_a_cifar_batch_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    import pickle

    from nasnet_zoo.data.cifar import CifarLayoutError, load_cifar10
    marker = tmp_path / "code_ran"
    good = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps(good))
    assert load_cifar10(tmp_path, "test")[0].shape == (2, 3, 32, 32)  # the array-only reader reads real layouts
    (tmp_path / "test_batch").write_bytes(pickle.dumps({**good, b"extra": _RunsCode(marker)}))
    with pytest.raises(CifarLayoutError, match="refusing to load posix.system"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_a_search_state_that_would_run_code_is_ignored_and_rebuilt(tmp_path, capsys):
    out = tmp_path / "run"
    SearchRun(_oracle(out, 40), progress=False).run()
    marker = tmp_path / "code_ran"
    torch.save({"version": 1, "payload": _RunsCode(marker)}, out / STATE_NAME)
    SearchRun(_oracle(out, 40), resume=True, progress=False)
    err = capsys.readouterr().err
    assert f"refused to load {out / STATE_NAME}" in err and "rebuilt the search state" in err and not marker.exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_det_eval_only_refuses_a_checkpoint_that_would_run_code(evil_checkpoint, tmp_path):
    path, marker = evil_checkpoint
    from test_det_engine import TINY
    result = subprocess.run([sys.executable, str(REPO / "tools" / "train_det.py"), "--eval-only", "--weights",
                             str(path), "--output-dir", str(tmp_path / "eval"), *TINY],
                            env={**ENV, "NASNET_ZOO_HOME": str(tmp_path / "home")}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "refused to load" in result.stderr and not marker.exists()


def test_every_load_in_the_product_is_weights_only():
    import ast
    offenders = []
    for root in ("src", "tools", "bench"):
        for file in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                        and isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "pickle"):
                    safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                               for k in node.keywords)
                    if not safe:
                        offenders.append(f"{file.relative_to(REPO)}:{node.lineno}")
    allowed = {"src/nasnet_zoo/data/cifar.py"}  # CIFAR-10's own format is a pickle (data/cifar.py reads it)
    assert [o for o in offenders if o.split(":")[0] not in allowed] == []


def test_old_detector_checkpoints_with_numpy_rng_state_still_load(tmp_path):
    """Before the one checkpoint module, train_det.py pickled NumPy's RNG state as an array."""
    np.random.seed(7)
    legacy_rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    expected = np.random.rand(3)
    old = tmp_path / "checkpoint.pth"
    torch.save({"model": {"w": torch.ones(2)}, "model_name": "m", "num_classes": 3, "categories": [1, 2],
                "iteration": 9, "rng": legacy_rng}, old)
    assert find_checkpoint(tmp_path) == old  # --resume finds the old name
    loaded = read_checkpoint(old)
    assert loaded["iteration"] == 9
    np.random.seed(0)
    set_rng_state(loaded["rng"])
    np.testing.assert_array_equal(np.random.rand(3), expected)
    # and what this code writes is plain: tensors, numbers, strings and containers only
    new = tmp_path / "new.pt"
    save_checkpoint(new, {"model": {}, "rng": rng_state()})
    torch.load(new, weights_only=True)


# ---- detection images that do not decode ------------------------------------------------------------------------
@pytest.fixture
def coco_with_bad_images(tmp_path) -> tuple[Path, Path]:
    """Six 64 px images with one box each: a truncated JPEG (id 3), a file that is no image (id 5)."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    entries, anns = [], []
    for i in range(1, 7):
        name = f"{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / name, quality=90)
        entries.append({"id": i, "file_name": name, "width": 64, "height": 64})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 30, 30], "area": 900, "iscrowd": 0})
    data = (images / "003.jpg").read_bytes()
    (images / "003.jpg").write_bytes(data[: len(data) // 2])
    (images / "005.jpg").write_bytes(b"this is not an image")
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps({"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "box"}]}))
    return images, ann


def test_bad_images_fail_by_name_or_are_listed_together_or_skipped(coco_with_bad_images):
    from nasnet_zoo.detection.data.coco import CocoDetection, CocoFormatError
    images, ann = coco_with_bad_images
    dataset = CocoDetection(images, ann, train=True)
    with pytest.raises(CocoFormatError, match=r"cannot read image .*003\.jpg \(image id 3\): .*data.check_images"):
        dataset[2]
    bad = dataset.unreadable_images(progress=False)
    assert [(b["image_id"], Path(b["file"]).name) for b in bad] == [(3, "003.jpg"), (5, "005.jpg")]
    assert "truncated" in bad[0]["error"] and "cannot identify" in bad[1]["error"]
    assert [b["image_id"] for b in dataset.unreadable_images(rank=1, world_size=2, progress=False)] == []
    skipping = CocoDetection(images, ann, train=True, skip_bad_images=True)
    image, target = skipping[2]
    assert int(target["image_id"]) == 4 and int(target["skipped_images"]) == 1 and image.shape == (3, 64, 64)
    assert "skipped_images" not in skipping[0][1]


def _det_config(tmp_path: Path, images: Path, ann: Path, *extra: str):
    from nasnet_zoo.config import load_config
    from nasnet_zoo.detection.config import DetConfig
    from test_det_engine import TINY
    return load_config(DetConfig(), None, [*TINY, "data.train_images", str(images), "data.train_ann", str(ann),
                                           "data.num_workers", "0", "output_dir", str(tmp_path / "out"), *extra])


def test_check_images_lists_every_unreadable_image_before_training(tmp_path, coco_with_bad_images):
    from nasnet_zoo.detection.data.coco import CocoFormatError
    from nasnet_zoo.detection.engine.runner import run
    images, ann = coco_with_bad_images
    threads = torch.get_num_threads()
    try:
        with pytest.raises(CocoFormatError) as error:
            run(_det_config(tmp_path, images, ann, "data.check_images", "true", "solver.max_iter", "2"))
    finally:
        torch.set_num_threads(threads)
    message = str(error.value)
    assert message.startswith("data.check_images: 2 images cannot be decoded")
    assert "003.jpg (image id 3)" in message and "005.jpg (image id 5)" in message
    assert "data.skip_bad_images true" in message
    assert [b["image_id"] for b in json.loads((tmp_path / "out" / "bad_images.json").read_text())] == [3, 5]
    assert not (tmp_path / "out" / "metrics.jsonl").exists()  # nothing trained


def test_skip_bad_images_keeps_training_and_counts_them(tmp_path, coco_with_bad_images):
    from nasnet_zoo.detection.engine.runner import run
    images, ann = coco_with_bad_images
    threads = torch.get_num_threads()
    try:
        run(_det_config(tmp_path, images, ann, "data.skip_bad_images", "true", "solver.max_iter", "6",
                        "data.aspect_ratio_grouping", "false"))
    finally:
        torch.set_num_threads(threads)
    records = [r for r in read_jsonl(tmp_path / "out" / "metrics.jsonl") if "loss" in r]
    assert [r["iter"] for r in records] == [1, 2, 3, 4, 5, 6]
    counts = [r["skipped_images"] for r in records]
    assert counts == sorted(counts) and counts[-1] >= 2  # 6 iterations x 2 images cover both bad ones (2 epochs)
    assert (tmp_path / "out" / "model_final.pth").is_file()
