"""The hardware-aware reward: MnasNet's soft constraint, latency measured through optimize_for_inference, cached
per genotype and journaled (resume reuses it), the Pareto plot, and bad latency settings."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nasnet_zoo import NASNET_A
from nasnet_zoo.search import NASNetSpace, SearchConfig, SearchRun
from nasnet_zoo.search import latency as latency_mod
from nasnet_zoo.search.child import ChildConfig
from nasnet_zoo.search.latency import (LatencyConfig, LatencyObjective, measure_latency_ms,
                                       soft_constraint_reward)
from nasnet_zoo.search.report import pareto_front, write_report
from nasnet_zoo.search.strategy import Proposal
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_latency(**kw) -> LatencyConfig:
    """A network that times in milliseconds, so that a test can measure dozens of genotypes."""
    return LatencyConfig(**{"target_ms": 5.0, "image_size": 16, "cells_per_stack": 1, "num_conv_filters": 4, "warmup": 1,
                            "runs": 3, **kw})


def test_soft_constraint_is_mnasnets_formula():
    assert soft_constraint_reward(0.8, 10.0, 10.0) == pytest.approx(0.8)
    assert soft_constraint_reward(0.8, 20.0, 10.0) == pytest.approx(0.8 * 2 ** -0.07)
    assert soft_constraint_reward(0.8, 5.0, 10.0) == pytest.approx(0.8 * 0.5 ** -0.07)
    assert soft_constraint_reward(0.8, 5.0, 10.0, weight=0.0) == pytest.approx(0.8)
    assert soft_constraint_reward(0.8, 20.0, 10.0, weight=-0.5) == pytest.approx(0.8 / math.sqrt(2))
    with pytest.raises(ValueError, match="must be > 0 ms"):
        soft_constraint_reward(0.8, 0.0, 10.0)


def test_latency_runs_the_inference_path_with_the_stated_threads_and_leaves_the_rng_alone(monkeypatch):
    seen = []
    real = latency_mod.optimize_for_inference

    def spy(model, **kw):
        seen.append((type(model).__name__, len(model.cells)))
        return real(model, **kw)

    monkeypatch.setattr(latency_mod, "optimize_for_inference", spy)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    ms = measure_latency_ms(NASNET_A, tiny_latency(cells_per_stack=2))
    assert seen == [("NASNet", 2 * 3 + 2)]  # 3 stacks of N = 2 normal cells plus 2 reduction cells
    assert math.isfinite(ms) and ms > 0
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)


def test_a_network_with_far_more_work_measures_slower():
    # ~100x the multiply-adds: robust to the noise of a shared machine, unlike a fine-grained timing test
    small = measure_latency_ms(NASNET_A, tiny_latency(num_conv_filters=4, image_size=16))
    large = measure_latency_ms(NASNET_A, tiny_latency(num_conv_filters=32, image_size=64, cells_per_stack=2))
    assert large > 3 * small


def test_objective_measures_each_genotype_once_and_takes_journaled_latencies(monkeypatch):
    calls = []
    monkeypatch.setattr(latency_mod, "measure_latency_ms", lambda g, cfg: calls.append(g) or 10.0)
    space = NASNetSpace()
    a, b = (space.to_genotype(space.random_decisions(np.random.default_rng(s))) for s in (1, 2))
    objective = LatencyObjective(LatencyConfig(target_ms=5.0), [{"genotype": a.to_dict(), "latency_ms": 2.5}])
    assert objective.score(a, 0.5) == {"accuracy": 0.5, "latency_ms": 2.5, "reward": pytest.approx(0.5 * 0.5 ** -0.07)}
    assert objective.score(b, 0.4)["latency_ms"] == 10.0 and objective.score(b, 0.6)["latency_ms"] == 10.0
    assert calls == [b] and objective.measured == 1


def test_pareto_front_keeps_exactly_the_undominated_points():
    latency = np.array([5.0, 3.0, 4.0, 3.0, 9.0, 6.0, 1.0])
    accuracy = np.array([0.6, 0.5, 0.4, 0.2, 0.9, 0.6, 0.1])
    assert pareto_front(latency, accuracy).tolist() == [6, 1, 0, 4]


def test_oracle_search_journals_accuracy_latency_and_reward_and_resume_measures_nothing_twice(tmp_path,
                                                                                              monkeypatch):
    measured = []
    real = latency_mod.measure_latency_ms
    monkeypatch.setattr(latency_mod, "measure_latency_ms", lambda g, cfg: measured.append(g) or real(g, cfg))
    cfg = SearchConfig(reward="oracle", strategy="random", backend="inline", children=12, output_dir=str(tmp_path),
                       latency=tiny_latency())
    summary = SearchRun(cfg, progress=False).run()
    records = read_jsonl(tmp_path / "journal.jsonl")
    assert len(records) == 12 and summary["latencies_measured"] == len(measured) == 12
    for r in records:
        assert r["latency_ms"] > 0
        assert r["reward"] == pytest.approx(r["accuracy"] * (r["latency_ms"] / 5.0) ** -0.07)
    assert len({round(r["reward"] / r["accuracy"], 9) for r in records}) > 1  # the latency term moves rewards

    cfg.children = 16
    resumed = SearchRun(cfg, resume=True, progress=False)
    assert resumed.latency.latency_ms(resumed.strategy.space.to_genotype(records[0]["decisions"])) \
        == records[0]["latency_ms"]
    resumed.run()
    records = read_jsonl(tmp_path / "journal.jsonl")
    assert len(records) == 16 and len(measured) == 16  # the 12 journaled latencies were reused

    summary_text = write_report(tmp_path, latency=cfg.latency)
    assert "Pareto front (child: accuracy @ ms)" in summary_text
    assert (tmp_path / "pareto.png").stat().st_size > 10_000


def test_duplicates_carry_the_first_childs_accuracy_and_latency(tmp_path):
    cfg = SearchConfig(reward="oracle", strategy="random", backend="inline", children=3, output_dir=str(tmp_path),
                       latency=tiny_latency())
    run = SearchRun(cfg, progress=False)
    space = run.strategy.space
    decisions = tuple(space.random_decisions(np.random.default_rng(3)))
    run.strategy.propose = lambda n: [Proposal(decisions, space.to_genotype(decisions), -1.0)] * n
    run.run()
    first, *dups = read_jsonl(tmp_path / "journal.jsonl")
    assert first["status"] == "ok" and [d["status"] for d in dups] == ["duplicate", "duplicate"]
    for d in dups:
        assert (d["accuracy"], d["latency_ms"], d["reward"]) == (first["accuracy"], first["latency_ms"],
                                                                 first["reward"])


def test_proxy_search_on_real_cifar_takes_the_latency_term(tmp_path, cifar_dir):
    cfg = SearchConfig(reward="proxy", strategy="random", backend="inline", children=2, data_dir=str(cifar_dir),
                       output_dir=str(tmp_path), latency=tiny_latency(target_ms=1000.0),
                       child=ChildConfig(train_size=64, val_size=100, image_size=16, num_conv_filters=4, cells=1,
                                         batch_size=32))
    SearchRun(cfg, progress=False).run()
    for r in read_jsonl(tmp_path / "journal.jsonl"):
        assert r["status"] == "ok" and 0 <= r["accuracy"] <= 1 and r["latency_ms"] > 0
        assert r["reward"] == pytest.approx(r["accuracy"] * (r["latency_ms"] / 1000.0) ** -0.07)


def _cli():
    spec = importlib.util.spec_from_file_location("search_cli", REPO / "tools" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, message", [
    (["--latency-target-ms", "0"], "a latency target must be > 0 ms, got 0.0"),
    (["--latency-target-ms", "-3"], "a latency target must be > 0 ms, got -3.0"),
    (["--latency-target-ms", "8", "latency.weight", "0.1"], "latency.weight must be <= 0"),
    (["--latency-target-ms", "8", "latency.stem", "mobile"], "latency.stem must be one of cifar, imagenet"),
    (["--latency-target-ms", "8", "latency.runs", "0"], "latency.runs must be >= 1"),
])
def test_bad_latency_settings_fail_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert _cli().main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--output-dir", str(out),
                        *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_resume_cannot_change_the_latency_objective(tmp_path, capsys):
    cli, out = _cli(), str(tmp_path / "out")
    assert cli.main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--children", "4",
                     "--latency-target-ms", "8", "--output-dir", out, "latency.num_conv_filters", "4",
                     "latency.image_size", "16", "latency.runs", "2"]) == 0
    assert cli.main(["--no-progress", "--output-dir", out, "--resume", "--latency-target-ms", "4"]) == 2
    assert "--resume cannot change latency" in capsys.readouterr().err
