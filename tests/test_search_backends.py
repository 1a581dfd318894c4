"""Child training and the work queues: local processes, Ray, worker deaths, SIGKILL + resume.

Children train on the real CIFAR-10 subset where NASNET_ZOO_TEST_DATA is set, else on scikit-learn's digit scans
in CIFAR's layout (``cifar_or_digits``), so a plain clone runs them too.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nasnet_zoo import NASNET_A
from nasnet_zoo.search import NASNetSpace, OracleReward, SearchConfig, SearchRun
from nasnet_zoo.search.backends import LocalBackend, RayBackend, Task
from nasnet_zoo.search.child import ChildConfig, ProxyData, train_child
from nasnet_zoo.search.rewards import ChildResult
from nasnet_zoo.search.state import STATE_NAME, load_search_state
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
TINY_CHILD = ["--child-train-size", "64", "--child-val-size", "50", "--child-image-size", "8",
              "--child-num-conv-filters", "4", "--child-cells", "1", "child.batch_size", "32"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_child_config(**kw) -> ChildConfig:
    return ChildConfig(**{"epochs": 1, "train_size": 64, "val_size": 50, "image_size": 8, "num_conv_filters": 4, "cells": 1,
                          "batch_size": 32, **kw})


def test_proxy_data_holds_validation_out_of_the_training_batches(cifar_dir):
    data = ProxyData.load(cifar_dir, ChildConfig(train_size=0, val_size=500, image_size=16))
    assert data.val_x.shape == (500, 3, 16, 16) and len(data.train_y) == 10000 - 500
    assert np.bincount(data.val_y.numpy(), minlength=10).tolist() == [50] * 10
    assert -1.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    # no validation image is a training image
    train = {x.numpy().tobytes() for x in data.train_x[:2000]}
    assert not any(x.numpy().tobytes() in train for x in data.val_x)


def test_child_trains_and_failures_give_reward_zero_with_the_reason(cifar_or_digits):
    data = ProxyData.load(cifar_or_digits, tiny_child_config())
    ok = train_child(NASNET_A, data, tiny_child_config(), seed=0)
    again = train_child(NASNET_A, data, tiny_child_config(), seed=0)
    assert ok.status == "ok" and ok.info["params"] > 0
    assert (ok.reward, ok.info["loss"]) == (again.reward, again.info["loss"])  # the seed fixes the child's training
    assert ok.reward * 50 == pytest.approx(round(ok.reward * 50))  # accuracy: a whole number of the 50 images
    nan = train_child(NASNET_A, data, tiny_child_config(lr=1e30), seed=0)
    assert (nan.status, nan.reward) == ("nan", 0.0) and "loss became" in nan.reason
    slow = train_child(NASNET_A, data, tiny_child_config(time_limit_s=1e-6), seed=0)
    assert (slow.status, slow.reward) == ("timeout", 0.0) and "time_limit_s" in slow.reason


class DiesOnce:
    """Kills its worker process the first time it sees a task seed (every time for ``always``), else succeeds."""

    def __init__(self, folder: str, always: int) -> None:
        self.folder, self.always = folder, always

    def __call__(self, genotype, seed=0, device="cpu") -> ChildResult:
        marker = Path(self.folder) / f"seen-{seed}"
        if seed == self.always or not marker.exists():
            marker.touch()
            os._exit(3)
        return ChildResult(0.5, "ok", "", 0.0)


def test_a_worker_that_dies_has_its_child_retried_once(tmp_path):
    backend = LocalBackend(DiesOnce(str(tmp_path), always=13), workers=1, threads_per_worker=1)
    outcomes, deadline = [], time.time() + 120
    try:
        for task_id, seed in enumerate((11, 12, 13)):
            backend.submit(Task(task_id, NASNET_A.to_dict(), seed=seed))
        while len(outcomes) < 3 and time.time() < deadline:
            outcomes += backend.wait(1.0)
    finally:
        backend.close()
    outcomes.sort(key=lambda o: o.task_id)
    assert [(o.result.status, o.result.reward, o.attempts) for o in outcomes] == [
        ("ok", 0.5, 2), ("ok", 0.5, 2), ("worker_died", 0.0, 2)]
    assert "exited with code 3" in outcomes[2].result.reason


def _proxy_config(tmp_path: Path, cifar_dir: Path, backend: str, children: int) -> SearchConfig:
    cfg = SearchConfig(reward="proxy", data_dir=str(cifar_dir), backend=backend, workers=2, children=children,
                       output_dir=str(tmp_path / backend))
    cfg.child = tiny_child_config()
    cfg.ppo.minibatch = 2
    return cfg


def _check_proxy_journal(cfg: SearchConfig) -> list[dict]:
    records = read_jsonl(Path(cfg.output_dir) / "journal.jsonl")
    assert [r["index"] for r in records] == list(range(cfg.children))
    val = cfg.child.val_size  # the reward is an accuracy: a whole number of the held-out images
    assert all(r["status"] == "ok" and r["seconds"] > 0 for r in records)
    assert [r["reward"] * val for r in records] == pytest.approx([round(r["reward"] * val) for r in records])
    assert load_search_state(Path(cfg.output_dir) / STATE_NAME)["strategy"]["updates"] == cfg.children // 2
    return records


def test_proxy_search_on_two_local_workers(tmp_path, cifar_or_digits):
    cfg = _proxy_config(tmp_path, cifar_or_digits, "local", 4)
    SearchRun(cfg, progress=False).run()
    records = _check_proxy_journal(cfg)
    assert {r["worker"] for r in records} <= {"local-0", "local-1"} and len({r["worker"] for r in records}) == 2


def test_evolution_runs_a_proxy_search_on_local_workers(tmp_path, cifar_or_digits):
    cfg = _proxy_config(tmp_path, cifar_or_digits, "local", 6)
    cfg.strategy, cfg.evolution.population, cfg.evolution.sample_size = "evolution", 3, 2
    SearchRun(cfg, progress=False).run()
    records = read_jsonl(Path(cfg.output_dir) / "journal.jsonl")
    assert [r["index"] for r in records] == list(range(6)) and all(r["status"] in ("ok", "duplicate") for r in records)
    population = load_search_state(Path(cfg.output_dir) / STATE_NAME)["strategy"]["population"]
    assert population == [[r["decisions"], r["reward"]] for r in records[-3:]]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ray_backend_retries_a_dead_worker_and_runs_a_proxy_search(tmp_path, cifar_or_digits):
    ray = pytest.importorskip("ray")
    # a local Ray with 2 workers that can import this test module (for DiesOnce)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        dying = RayBackend(DiesOnce(str(tmp_path), always=13), workers=2)
        dying.submit(Task(0, NASNET_A.to_dict(), seed=11))
        dying.submit(Task(1, NASNET_A.to_dict(), seed=13))
        outcomes, deadline = [], time.time() + 300  # Ray workers start slowly on a loaded machine
        while len(outcomes) < 2 and time.time() < deadline:
            outcomes += dying.wait(1.0)
        outcomes.sort(key=lambda o: o.task_id)
        assert [(o.result.status, o.attempts) for o in outcomes] == [("ok", 2), ("worker_died", 2)]

        cfg = _proxy_config(tmp_path, cifar_or_digits, "ray", 4)  # uses the Ray started above, shuts it down at the end
        SearchRun(cfg, progress=False).run()
        _check_proxy_journal(cfg)
    finally:
        ray.shutdown()


def _start(out: Path, children: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "search.py"), "--reward", "oracle", "--backend", "inline",
         "--children", str(children), "--output-dir", str(out), "--no-progress", "--seed", "4"]
        + (["--resume"] if (out / "config.yaml").exists() else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)


def _kill_when(process: subprocess.Popen, journal: Path, lines: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= lines:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.02)
    raise AssertionError(f"search ended or stalled before {lines} children: {process.stderr.read().decode()}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_then_resume_loses_no_child_and_counts_none_twice(tmp_path):
    out, children = tmp_path / "run", 300
    journal = out / "journal.jsonl"
    _kill_when(_start(out, children), journal, 90)        # mid-way between two PPO updates
    before = read_jsonl(journal)
    assert 90 <= len(before) < children
    _kill_when(_start(out, children), journal, len(before) + 75)
    middle = read_jsonl(journal)
    assert middle[:len(before)] == before               # finished children are never rewritten
    process = _start(out, children)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    records = read_jsonl(journal)
    assert records[:len(middle)] == middle
    assert [r["index"] for r in records] == list(range(children))
    state = load_search_state(out / STATE_NAME)
    # every finished child went into exactly one PPO minibatch: updates and leftovers add up to the count
    assert state["observed"] == children and state["resumes"] == 2
    assert state["strategy"]["updates"] * 20 + len(state["strategy"]["buffer"]) == children
    oracle = OracleReward(NASNetSpace(), seed=4)
    assert all(r["reward"] == oracle(NASNetSpace().to_genotype(r["decisions"])).reward for r in records)


class StallsMidChild:
    """The oracle reward, except that once ``after`` children are done, each child that starts marks itself
    ``running-*`` and waits for a file ``go``: the workers are mid-child at a moment the test can see."""

    def __init__(self, folder: str, after: int, seed: int) -> None:
        self.folder, self.after, self.oracle = folder, after, OracleReward(NASNetSpace(), seed)

    def __call__(self, genotype, seed=0, device="cpu") -> ChildResult:
        folder = Path(self.folder)
        if len(list(folder.glob("done-*"))) >= self.after and not (folder / "go").exists():
            (folder / f"running-{seed}").touch()
            while not (folder / "go").exists():
                time.sleep(0.02)
        result = self.oracle(genotype, seed, device)
        (folder / f"done-{seed}").touch()
        return result


_STALLING_SEARCH = """
import sys
from pathlib import Path
from nasnet_zoo.search import SearchConfig, SearchRun, runner
from test_search_backends import StallsMidChild
out, gate = Path(sys.argv[1]), sys.argv[2]
cfg = SearchConfig(reward="oracle", backend="local", workers=2, worker_threads=1, children=12, seed=4,
                   output_dir=str(out))
cfg.ppo.minibatch = 4
runner.build_evaluator = lambda cfg, *args: StallsMidChild(gate, after=5, seed=cfg.seed)
SearchRun(cfg, resume=(out / "journal.jsonl").exists(), progress=False).run()
"""


def _stalling_search(out: Path, gate: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    # its own session, so the kill takes the search, its fork server and both workers at once (a lost machine)
    return subprocess.Popen([sys.executable, "-c", _STALLING_SEARCH, str(out), str(gate)], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_while_local_workers_are_mid_child_loses_and_doubles_nothing(tmp_path):
    out, gate = tmp_path / "run", tmp_path / "gate"
    gate.mkdir()
    process = _stalling_search(out, gate)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            done = len(list(gate.glob("done-*")))
            evaluated = [r for r in read_jsonl(out / "journal.jsonl") if r["worker"].startswith("local-")] \
                if (out / "journal.jsonl").exists() else []
            if len(list(gate.glob("running-*"))) == 2 and len(evaluated) == done:
                break  # both workers mid-child, every finished child journaled
            time.sleep(0.05)
        assert process.poll() is None, f"the search ended or stalled too early: {process.stderr.read().decode()}"
        before = read_jsonl(out / "journal.jsonl")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert 5 <= len(before) < 12
    stalled = {p.name.removeprefix("running-") for p in gate.glob("running-*")}
    assert len(stalled) == 2

    (gate / "go").touch()
    resumed = _stalling_search(out, gate)
    assert resumed.wait(timeout=200) == 0, resumed.stderr.read().decode()
    records = read_jsonl(out / "journal.jsonl")
    assert records[:len(before)] == before                       # finished children are never rewritten
    assert [r["index"] for r in records] == list(range(12))      # none lost, none counted twice
    evaluated = [r for r in records if r["status"] == "ok"]
    assert len({json.dumps(r["genotype"], sort_keys=True) for r in evaluated}) == len(evaluated)
    state = load_search_state(out / STATE_NAME)
    assert state["observed"] == 12 and state["resumes"] == 1
    assert state["strategy"]["updates"] * 4 + len(state["strategy"]["buffer"]) == 12
    oracle = OracleReward(NASNetSpace(), seed=4)
    assert all(r["reward"] == oracle(NASNetSpace().to_genotype(r["decisions"])).reward for r in records)
