"""The search's parts: space, controller, PPO, the oracle learning check, journal, runner, report, CLI errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nasnet_zoo import Genotype, build_nasnet, create_model
from nasnet_zoo.search import (Controller, OracleReward, PPOConfig, PPOStrategy, PPOTrainer, RandomStrategy,
                               SearchConfig, SearchConfigError, SearchRun, NASNetSpace)
from nasnet_zoo.search.journal import Journal, genotype_key
from nasnet_zoo.search.report import write_report
from nasnet_zoo.search.state import STATE_NAME, load_search_state
from nasnet_zoo.search.strategy import Proposal
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def oracle_config(tmp_path: Path, **kw) -> SearchConfig:
    cfg = SearchConfig(reward="oracle", backend="inline", output_dir=str(tmp_path / "run"))
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


# ---- space ----------------------------------------------------------------------------------------------------

def test_space_has_the_papers_50_decisions_and_round_trips():
    space = NASNetSpace()
    assert space.num_decisions == 50
    rng = np.random.default_rng(0)
    for _ in range(50):
        decisions = space.random_decisions(rng)
        genotype = space.to_genotype(decisions)
        assert space.to_decisions(genotype) == decisions
        for cell in (genotype.normal, genotype.reduction):
            assert cell.concat == cell.unused_states() and cell.concat


def test_space_rejects_inputs_that_do_not_exist_yet():
    space = NASNetSpace()
    decisions = space.random_decisions(np.random.default_rng(0))
    decisions[0] = 2  # block 0 can only read h_i or h_{i-1}
    with pytest.raises(ValueError, match="decision 0 \\(input\\) is 2; valid choices are 0..1"):
        space.to_genotype(decisions)
    with pytest.raises(ValueError, match="expected 50 decisions"):
        space.to_genotype(decisions[:-1])


# ---- controller -----------------------------------------------------------------------------------------------

def test_controller_is_the_papers_lstm():
    controller = Controller(NASNetSpace(), seed=0)
    assert controller.lstm.hidden_size == 100
    values = torch.cat([p.detach().flatten() for p in controller.parameters()])
    assert values.abs().max() <= 0.1 and values.min() < -0.09 and values.max() > 0.09


def test_controller_masks_inputs_and_is_reproducible():
    space = NASNetSpace()
    a = Controller(space, seed=3).sample(200, torch.Generator().manual_seed(5))
    b = Controller(space, seed=3).sample(200, torch.Generator().manual_seed(5))
    c = Controller(space, seed=3).sample(200, torch.Generator().manual_seed(6))
    assert torch.equal(a.decisions, b.decisions) and not torch.equal(a.decisions, c.decisions)
    for t, (_, valid) in enumerate(space.steps()):
        assert int(a.decisions[:, t].max()) < valid
        assert int(a.decisions[:, t].max()) == valid - 1  # every valid choice is reachable
    for row in a.decisions.tolist():
        space.to_genotype(row)


def test_controller_log_prob_and_entropy():
    space = NASNetSpace()
    controller = Controller(space, seed=0)
    sample = controller.sample(8, torch.Generator().manual_seed(0))
    again = controller.evaluate(sample.decisions)
    torch.testing.assert_close(again.log_prob, sample.log_prob)
    # near-uniform at init: entropy close to the log of the number of valid sequences
    uniform = sum(math.log(valid) for _, valid in space.steps())
    assert 0.97 * uniform < float(sample.entropy.mean()) <= uniform + 1e-4
    assert float(-sample.log_prob.mean()) == pytest.approx(uniform, rel=0.05)
    again.log_prob.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in controller.parameters())


# ---- PPO ------------------------------------------------------------------------------------------------------

def test_ppo_defaults_are_the_papers():
    cfg = PPOConfig()
    assert (cfg.lr, cfg.entropy_weight, cfg.baseline_decay, cfg.minibatch) == (0.00035, 0.00001, 0.95, 20)
    assert (cfg.clip, cfg.epochs) == (0.2, 1)


def test_ppo_baseline_is_an_exponential_moving_average():
    trainer = PPOTrainer(Controller(NASNetSpace()))
    assert trainer.advantages([1.0]) == [0.0]
    assert trainer.advantages([0.0]) == pytest.approx([-1.0])
    assert trainer.baseline == pytest.approx(0.95)
    assert trainer.advantages([0.5]) == pytest.approx([0.5 - 0.95])
    assert trainer.baseline == pytest.approx(0.95 * 0.95 + 0.05 * 0.5)


def test_ppo_clipping_stops_the_update_when_the_ratio_left_the_trust_region():
    controller = Controller(NASNetSpace(), seed=0)
    trainer = PPOTrainer(controller, PPOConfig(entropy_weight=0.0))
    sample = controller.sample(4, torch.Generator().manual_seed(0))
    trainer.baseline = 0.0
    before = [p.detach().clone() for p in controller.parameters()]
    # old policy far less likely (ratio e^2 > 1 + clip) and positive advantage: the clipped objective is flat
    trainer.update(sample.decisions, sample.log_prob - 2.0, [1.0] * 4)
    assert all(torch.equal(a, b) for a, b in zip(before, controller.parameters()))
    # inside the region the same batch moves the policy towards the rewarded decisions
    trainer.baseline = 0.0
    logp = controller.evaluate(sample.decisions).log_prob.detach()
    trainer.update(sample.decisions, logp, [1.0] * 4)
    assert (controller.evaluate(sample.decisions).log_prob > logp).all()


def test_ppo_updates_once_per_minibatch_and_restores_its_state():
    space = NASNetSpace()
    strategy = PPOStrategy(space, PPOConfig(minibatch=5), seed=1)
    for i, p in enumerate(strategy.propose(12)):
        stats = strategy.observe(p.decisions, p.log_prob, 0.1 * (i % 3))
        assert (stats is not None) == ((i + 1) % 5 == 0)
    state = strategy.state_dict()
    twin = PPOStrategy(space, PPOConfig(minibatch=5), seed=99)
    twin.load_state_dict(state)
    assert twin.trainer.updates == 2 and len(twin.buffer) == 2 and twin.trainer.baseline == strategy.trainer.baseline
    assert [p.decisions for p in twin.propose(3)] == [p.decisions for p in strategy.propose(3)]


def run_oracle(strategy, reward: OracleReward, children: int) -> np.ndarray:
    rewards = []
    while len(rewards) < children:
        for p in strategy.propose(20):
            r = reward(p.genotype).reward
            rewards.append(r)
            strategy.observe(p.decisions, p.log_prob, r)
    return np.array(rewards)


def test_ppo_learns_the_oracle_and_beats_random_search():
    """The RL machinery check of the issue (bench/search.py runs 3 seeds; REFERENCE: 0.57-0.63 vs 0.24)."""
    space = NASNetSpace()
    oracle = OracleReward(space, seed=0)
    ppo = run_oracle(PPOStrategy(space, seed=0), oracle, 2000)
    rnd = run_oracle(RandomStrategy(space, seed=0), oracle, 2000)
    assert rnd[-200:].mean() < 0.3
    assert ppo[-200:].mean() > rnd[-200:].mean() + 0.2
    assert ppo.max() > rnd.max() + 0.1


# ---- journal --------------------------------------------------------------------------------------------------

def test_journal_repairs_a_torn_tail_and_checks_indices(tmp_path):
    space = NASNetSpace()
    genotype = space.to_genotype(space.random_decisions(np.random.default_rng(0)))
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"genotype": genotype.to_dict(), "reward": 0.5}, genotype_key(genotype))
    with open(tmp_path / "journal.jsonl", "a") as f:
        f.write('{"index": 1, "genotype": {"nor')  # SIGKILL mid-write
    journal = Journal(tmp_path / "journal.jsonl")
    assert len(journal) == 1 and journal.lookup(genotype_key(genotype))["reward"] == 0.5
    journal.append({"genotype": genotype.to_dict(), "reward": 0.7}, genotype_key(genotype))
    assert [r["index"] for r in read_jsonl(tmp_path / "journal.jsonl")] == [0, 1]
    assert journal.lookup(genotype_key(genotype))["index"] == 0  # the first evaluation stays the reference
    (tmp_path / "journal.jsonl").write_text(json.dumps({"index": 5, "genotype": genotype.to_dict()}) + "\n")
    with pytest.raises(ValueError, match="has index 5, expected 0"):
        Journal(tmp_path / "journal.jsonl")


# ---- runner and outputs ---------------------------------------------------------------------------------------

def test_oracle_search_writes_everything_and_resumes_to_an_exact_count(tmp_path):
    cfg = oracle_config(tmp_path, children=50, top_k=3)
    summary = SearchRun(cfg, progress=False).run()
    out = Path(cfg.output_dir)
    records = read_jsonl(out / "journal.jsonl")
    assert summary["children"] == 50 and [r["index"] for r in records] == list(range(50))
    for key in ("index", "genotype", "reward", "status", "seconds", "decisions", "log_prob"):
        assert key in records[0]
    assert load_search_state(out / STATE_NAME)["strategy"]["updates"] == 2
    with pytest.raises(SearchConfigError, match="already holds a search"):
        SearchRun(cfg, progress=False)
    cfg.children = 70
    SearchRun(cfg, resume=True, progress=False).run()
    state = load_search_state(out / STATE_NAME)
    assert len(read_jsonl(out / "journal.jsonl")) == 70 and state["strategy"]["updates"] == 3
    assert state["observed"] == 70

    summary_text = write_report(out, top_k=3)
    assert "children: 70" in summary_text
    top = json.loads((out / "top_genotypes.json").read_text())
    assert [t["rank"] for t in top] == [1, 2, 3] and top[0]["reward"] == max(r["reward"] for r in read_jsonl(
        out / "journal.jsonl"))
    genotype = Genotype.from_json(json.dumps(top[0]["genotype"]))
    x = torch.randn(2, 3, 32, 32)
    model = build_nasnet(genotype, cells_per_stack=1, num_conv_filters=4, stem="cifar", num_classes=10,
                         aux_head=False).eval()
    assert model(x).shape == (2, 10)
    zoo = create_model("nasnet_a_cifar", genotype=genotype, cells_per_stack=1, num_conv_filters=4, num_classes=10,
                       aux_head=False).eval()
    assert zoo(x).shape == (2, 10)
    for name in ("rewards.png", "cells/rank1.png", "cells/nasnet_a.png", "metrics.jsonl", "config.yaml"):
        assert (out / name).stat().st_size > 0
    assert any((out / "tensorboard").iterdir())


def test_seeded_searches_are_reproducible(tmp_path):
    runs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = oracle_config(tmp_path, children=40, seed=seed, output_dir=str(tmp_path / name))
        SearchRun(cfg, progress=False).run()
        runs.append([(r["decisions"], r["reward"]) for r in read_jsonl(tmp_path / name / "journal.jsonl")])
    assert runs[0] == runs[1] and runs[0] != runs[2]


class _Cycle:
    """A strategy that keeps proposing the same three genotypes, to exercise de-duplication."""

    name = "ppo"
    batch = 20

    def __init__(self, space: NASNetSpace) -> None:
        rng = np.random.default_rng(0)
        self.pool = [tuple(space.random_decisions(rng)) for _ in range(3)]
        self.space, self.count, self.seen = space, 0, []

    def propose(self, n):
        out = []
        for _ in range(n):
            d = self.pool[self.count % 3]
            self.count += 1
            out.append(Proposal(d, self.space.to_genotype(d), -1.0))
        return out

    def observe(self, decisions, log_prob, reward):
        self.seen.append(reward)

    def state_dict(self):
        return {}


def test_a_genotype_already_evaluated_is_not_trained_again(tmp_path, monkeypatch):
    import nasnet_zoo.search.runner as runner

    calls = []
    oracle = OracleReward(NASNetSpace(), 0)

    def counting(genotype, seed=0, device="cpu"):
        calls.append(genotype_key(genotype))
        return oracle(genotype)

    monkeypatch.setattr(runner, "build_evaluator", lambda cfg, *args: counting)
    run = SearchRun(oracle_config(tmp_path, children=10), progress=False)
    run.strategy = _Cycle(NASNetSpace())
    run.run()
    records = read_jsonl(Path(run.cfg.output_dir) / "journal.jsonl")
    assert len(calls) == 3 and len(set(calls)) == 3
    assert [r["status"] for r in records].count("duplicate") == 7
    for r in records:
        if r["status"] == "duplicate":
            assert records[r["duplicate_of"]]["reward"] == r["reward"] and records[r["duplicate_of"]]["status"] == "ok"
    assert len(run.strategy.seen) == 10  # duplicates still inform the policy


# ---- bad input ------------------------------------------------------------------------------------------------

def _cli():
    import importlib.util
    spec = importlib.util.spec_from_file_location("search_cli", REPO / "tools" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--strategy", "bayesian"], "unknown strategy 'bayesian'; expected one of ppo, random, evolution"),
    (["--backend", "slurm"], "unknown backend 'slurm'; expected one of inline, local, ray"),
    (["--reward", "oracle", "ppo.clipp", "0.1"], "unknown config key 'ppo.clipp'; did you mean ppo.clip"),
    (["--reward", "proxy"], "give --data-dir"),
    (["--reward", "proxy", "--data-dir", "{tmp}"], "is not the CIFAR-10 python layout: missing data_batch_1"),
    (["--reward", "oracle", "--backend", "ray", "--ray-address", "127.0.0.1:{port}"], "does not answer"),
    (["--config-file", "{tmp}/missing.yaml"], "does not exist"),
    (["--reward", "oracle", "--children", "0"], "children and top_k must be >= 1"),
    (["--reward", "oracle", "--workers", "-1"], "workers and worker_threads >= 0"),
])
def test_bad_settings_fail_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path, port=_closed_port()) for a in args]
    assert _cli().main(["--no-progress", "--output-dir", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_resume_keeps_what_defines_the_search(tmp_path, capsys):
    cli = _cli()
    out = str(tmp_path / "out")
    assert cli.main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--children", "20",
                     "--output-dir", out]) == 0
    assert cli.main(["--no-progress", "--output-dir", out, "--resume", "--strategy", "random"]) == 2
    assert "--resume cannot change strategy" in capsys.readouterr().err
    assert cli.main(["--no-progress", "--output-dir", out, "--resume", "--children", "30"]) == 0
    assert len(read_jsonl(Path(out) / "journal.jsonl")) == 30


def test_retrain_top_flag_hands_the_search_folder_and_budget_to_the_trainer(tmp_path, capsys, monkeypatch):
    import nasnet_zoo.training.retrain as retrain

    calls = []

    def fake_retrain_top(source, k, **budget):
        calls.append((str(source), k, budget))
        return [{"rank": 1, "search_rank": 2, "search_reward": 0.5, "top1": 75.0, "params": 1234, "output_dir": "r2"},
                {"rank": 2, "search_rank": 1, "search_reward": 0.6, "top1": 70.0, "params": 1234, "output_dir": "r1"}]

    monkeypatch.setattr(retrain, "retrain_top", fake_retrain_top)
    cli, out = _cli(), str(tmp_path / "out")
    assert cli.main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--children", "20",
                     "--output-dir", out]) == 0
    assert cli.main(["--output-dir", out, "--report-only", "--retrain-top", "2", "--retrain-epochs", "3",
                     "--retrain-num-conv-filters", "8"]) == 0
    assert calls == [(out, 2, {"epochs": 3.0, "num_conv_filters": 8})]
    assert "winner: the search's rank-2 cell (reward 0.5000) retrains to 75.00% top-1" in capsys.readouterr().out


def test_a_child_that_raises_gets_reward_zero_with_the_error_as_reason():
    from nasnet_zoo import NASNET_A
    from nasnet_zoo.search.backends import InlineBackend, Task

    def broken(genotype, seed=0, device="cpu"):
        raise RuntimeError("CUDA out of memory (simulated)")

    backend = InlineBackend(broken)
    backend.submit(Task(7, NASNET_A.to_dict(), seed=0))
    [outcome] = backend.wait(0.0)
    assert (outcome.task_id, outcome.result.status, outcome.result.reward) == (7, "error", 0.0)
    assert outcome.result.reason == "RuntimeError: CUDA out of memory (simulated)"
