"""Search spaces as data, the benchmark-table reward and regularized evolution (issue 22)."""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasnet_zoo.config import load_config
from nasnet_zoo.genotypes import GenotypeError
from nasnet_zoo.search import (EvolutionConfig, EvolutionStrategy, NASBench201Cell, NASBench201Space, NASNetSpace,
                               SearchConfig, SearchConfigError, SearchRun, TableConfig, TableError,
                               genotype_from_dict, load_table_reward)
from nasnet_zoo.search.controller import Controller
from nasnet_zoo.search.report import write_report
from nasnet_zoo.search.spaces import mutate
from nasnet_zoo.search.state import STATE_NAME, load_search_state
from nasnet_zoo.search.table import NASBENCH201_CIFAR10
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows() -> list[dict[str, str]]:
    with open(NASBENCH201_CIFAR10, newline="") as f:
        return list(csv.DictReader(f))


def _search(tmp_path: Path, *opts: str, name: str = "run") -> SearchConfig:
    return load_config(SearchConfig(), None, ["space", "nasbench201", "reward", "table", "children", "60",
                                              "output_dir", str(tmp_path / name), *opts])


# ---- spaces ----------------------------------------------------------------------------------------------------

def test_every_arch_string_of_the_table_round_trips_through_decisions_and_genotype():
    space = NASBench201Space()
    rows = _rows()
    assert len(rows) == 15_625
    seen = set()
    for row in rows:
        decisions = space.to_decisions(NASBench201Cell.from_arch(row["arch"]))
        assert space.to_genotype(decisions).arch == row["arch"]
        seen.add(tuple(decisions))
    assert len(seen) == 15_625  # every decision sequence of the space, each once


@pytest.mark.parametrize("arch, problem", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 node groups"),
    ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NAS-Bench-201 op"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "should come from node 0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2.s group .* should list 2 edge"),
])
def test_a_malformed_arch_string_says_what_is_wrong(arch, problem):
    with pytest.raises(GenotypeError, match=problem):
        NASBench201Cell.from_arch(arch)


def test_genotypes_of_both_spaces_come_back_from_their_journal_dicts():
    cell = NASBench201Cell.from_arch(OPTIMUM, name="best")
    assert genotype_from_dict(cell.to_dict()) == cell
    nasnet = NASNetSpace().to_genotype(NASNetSpace().random_decisions(np.random.default_rng(0)))
    assert genotype_from_dict(nasnet.to_dict()) == nasnet


@pytest.mark.parametrize("space", [NASNetSpace(), NASBench201Space()], ids=["nasnet", "nasbench201"])
def test_mutation_changes_exactly_one_decision_and_stays_valid(space):
    rng = np.random.default_rng(0)
    positions = set()
    for _ in range(300):
        parent = space.random_decisions(rng)
        child = mutate(space, parent, rng)
        changed = [t for t, (a, b) in enumerate(zip(parent, child)) if a != b]
        assert len(changed) == 1
        positions.add(changed[0])
        space.to_genotype(child)  # raises on an invalid decision
        assert all(0 <= d < valid for d, (_, valid) in zip(child, space.steps()))
    assert len(positions) > space.num_decisions // 2  # mutations reach many positions, not one


def test_the_controller_samples_valid_nasbench201_cells():
    space = NASBench201Space()
    out = Controller(space, seed=0).sample(50)
    assert out.decisions.shape == (50, 6)
    for row in out.decisions.tolist():
        space.to_genotype(row)


def test_the_nasnet_space_gives_the_same_children_and_rewards_as_before(tmp_path):
    """Oracle journals made before spaces became data (tests/fixtures/search_oracle_journal.json)."""
    reference = json.loads((FIXTURES / "search_oracle_journal.json").read_text())["runs"]
    for strategy, expected in reference.items():
        cfg = load_config(SearchConfig(), REPO / "configs" / "search" / "oracle.yaml",
                          ["strategy", strategy, "children", "120", "seed", "3",
                           "output_dir", str(tmp_path / strategy)])
        SearchRun(cfg, progress=False).run()
        records = read_jsonl(tmp_path / strategy / "journal.jsonl")
        assert [r["decisions"] for r in records] == expected["decisions"], strategy
        assert [r["reward"] for r in records] == expected["reward"], strategy
        assert [r["log_prob"] for r in records] == expected["log_prob"], strategy


# ---- benchmark-table reward ----------------------------------------------------------------------------------

def test_the_table_reward_returns_the_rows_values():
    reward = load_table_reward(TableConfig(), NASBench201Space())
    rows = _rows()
    for row in (rows[0], rows[6111], rows[-1]):
        result = reward(NASBench201Cell.from_arch(row["arch"]))
        assert result.reward == float(row["cifar10_valid_200ep"])
        assert result.info == {"cifar10_test_200ep": float(row["cifar10_test_200ep"]), "table_index": int(row["index"])}
    other = load_table_reward(TableConfig(reward_column="cifar10_valid_12ep", test_column="params_mb"),
                              NASBench201Space())
    assert other(NASBench201Cell.from_arch(rows[5]["arch"])).reward == float(rows[5]["cifar10_valid_12ep"])
    best = reward.table.best("cifar10_valid_200ep")
    assert reward.table.arches[best] == OPTIMUM and reward.table.index[best] == 6111


def _write(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("damage, message", [
    ("missing column", "no column 'cifar10_valid_200ep'"),
    ("foreign arch", r"row 7: arch is not in the nasbench201 space"),
    ("duplicate", r"row 12: arch .* is a duplicate of row 3"),
    ("partial", "15624 distinct cells, but the nasbench201 space has 15625"),
    ("not a number", r"row 4: column 'cifar10_test_200ep' holds 'n/a'"),
])
def test_a_bad_table_is_refused_before_anything_is_written(tmp_path, damage, message):
    rows = _rows()
    columns = None
    if damage == "missing column":
        columns = ["index", "arch", "cifar10_test_200ep"]
    elif damage == "foreign arch":
        rows[5]["arch"] = "|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    elif damage == "duplicate":
        rows[10]["arch"] = rows[1]["arch"]
    elif damage == "partial":
        rows = rows[:-1]
    else:
        rows[2]["cifar10_test_200ep"] = "n/a"
    table = _write(tmp_path / "table.csv", rows, columns)
    cfg = _search(tmp_path, "table.path", str(table))
    with pytest.raises(SearchConfigError, match=message) as err:
        SearchRun(cfg, progress=False)
    assert str(table) in str(err.value)
    assert not (tmp_path / "run").exists()


def test_spaces_and_rewards_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(SearchConfigError, match="no NAS-Bench-201 arch strings|--space nasbench201"):
        SearchRun(_search(tmp_path, "space", "nasnet"), progress=False)
    with pytest.raises(SearchConfigError, match="searches the nasnet space"):
        SearchRun(_search(tmp_path, "reward", "proxy"), progress=False)
    with pytest.raises(SearchConfigError, match="unknown space 'darts'"):
        SearchRun(_search(tmp_path, "space", "darts"), progress=False)
    with pytest.raises(SearchConfigError, match="sample_size <= population"):
        SearchRun(_search(tmp_path, "strategy", "evolution", "evolution.sample_size", "20"), progress=False)


@pytest.mark.parametrize("strategy", ["ppo", "random", "evolution"])
def test_a_table_search_counts_repeats_as_queries_and_reports_the_test_column(tmp_path, strategy):
    cfg = _search(tmp_path, "strategy", strategy, "children", "150", "top_k", "5")
    summary = SearchRun(cfg, progress=False).run()
    records = read_jsonl(tmp_path / "run" / "journal.jsonl")
    assert summary["children"] == len(records) == 150
    reward = load_table_reward(TableConfig(), NASBench201Space())
    for r in records:  # repeats included: each query's reward and test value are its row's
        row = reward.table.row(NASBench201Cell.from_dict(r["genotype"]))
        assert r["reward"] == reward.table.values["cifar10_valid_200ep"][row]
        assert r["info"]["cifar10_test_200ep"] == reward.table.values["cifar10_test_200ep"][row]
    text = write_report(cfg.output_dir, cfg.top_k)
    top = json.loads((tmp_path / "run" / "top_genotypes.json").read_text())
    best = max(records, key=lambda r: r["reward"])
    assert top[0]["reward"] == best["reward"] and top[0]["info"] == best["info"]
    assert f"cifar10_test_200ep {best['info']['cifar10_test_200ep']:g}" in text and best["genotype"]["arch"] in text
    assert (tmp_path / "run" / "rewards.png").is_file()


def test_evolution_finds_better_cells_than_random_on_the_table(tmp_path):
    """Not the benchmark (bench/search_strategies.py), a smoke check that selection works: 10 seeds x 300."""
    best = {}
    for strategy in ("random", "evolution"):
        best[strategy] = [SearchRun(_search(tmp_path, "strategy", strategy, "children", "300", "seed", str(seed),
                                            name=f"{strategy}{seed}"), progress=False,
                                    metrics=False).run()["best_reward"] for seed in range(10)]
    assert np.mean(best["evolution"]) > np.mean(best["random"])


def test_evolution_keeps_the_newest_population_and_replays_exactly():
    space = NASBench201Space()
    strategy = EvolutionStrategy(space, EvolutionConfig(population=4, sample_size=2), seed=1)
    observed = []
    for i in range(12):
        (proposal,) = strategy.propose(1)
        observed.append((proposal.decisions, float(i)))
        strategy.observe(proposal.decisions, 0.0, float(i))
        if i >= 4:  # tournaments from here: the child differs from a population member in one decision
            assert any(sum(a != b for a, b in zip(proposal.decisions, member)) == 1
                       for member, _ in observed[i - 4:i])
    assert [r for _, r in strategy.population] == [8.0, 9.0, 10.0, 11.0]  # the oldest left, whatever their reward
    replayed = EvolutionStrategy(space, EvolutionConfig(population=4, sample_size=2), seed=1)
    for decisions, reward in observed:
        replayed.observe(decisions, 0.0, reward)
    assert replayed.state_dict()["population"] == strategy.state_dict()["population"]


def test_the_search_cli_runs_a_table_search_from_a_clone(tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, str(REPO / "tools" / "search.py"), "--space", "nasbench201", "--reward",
                           "table", "--strategy", "evolution", "--children", "40", "--population", "5",
                           "--sample-size", "2", "--output-dir", str(out), "--no-progress"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cifar10_test_200ep" in done.stdout and len(read_jsonl(out / "journal.jsonl")) == 40
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "search.py"), "--space", "nasbench201", "--reward",
                          "table", "--table", str(tmp_path / "missing.csv"), "--output-dir", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "missing.csv does not exist" in bad.stderr and not (tmp_path / "x").exists()


# ---- resume after SIGKILL ----------------------------------------------------------------------------------

def _start(out: Path, children: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "search.py"), "--space", "nasbench201", "--reward", "table",
         "--strategy", "evolution", "--children", str(children), "--output-dir", str(out), "--no-progress",
         "--seed", "5"] + (["--resume"] if (out / "config.yaml").exists() else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_evolution_resumes_after_sigkill_without_losing_or_repeating_a_line(tmp_path):
    from test_search_backends import _kill_when

    out, children = tmp_path / "run", 3000
    journal = out / "journal.jsonl"
    _kill_when(_start(out, children), journal, 400)
    before = read_jsonl(journal)
    assert 400 <= len(before) < children
    process = _start(out, children)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()
    records = read_jsonl(journal)
    assert records[:len(before)] == before and [r["index"] for r in records] == list(range(children))
    state = load_search_state(out / STATE_NAME)
    assert state["observed"] == children and state["resumes"] == 1
    # the population after the resume is the last 10 journaled children, as an uninterrupted run's would be
    assert state["strategy"]["population"] == [[r["decisions"], r["reward"]] for r in records[-10:]]
    assert sum(r["status"] == "ok" for r in records) > 100  # the search kept proposing new cells


# ---- the benchmark ---------------------------------------------------------------------------------------------

def test_the_strategy_benchmark_runs_and_every_figure_is_finite(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_strategies", REPO / "bench" / "search_strategies.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "s.json"
    assert bench.main(["--seeds", "3", "--budgets", "10", "30", "--workers", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["strategies"]) == set(bench.STRATEGIES) and result["budgets"] == [10, 30]
    for name, figures in result["strategies"].items():
        for budget in ("10", "30"):
            row = figures["budgets"][budget]
            numbers = [v for k, v in row.items() if not k.startswith("mwu")]
            numbers += [t[x] for k, t in row.items() if k.startswith("mwu") for x in ("U", "p")]
            assert all(np.isfinite(numbers)), (name, row)
            assert 0 <= row["found_best_share"] <= 1 and row["top1_mean"] >= row["top5_mean"] >= row["top25_mean"]
            assert ("mwu_test_vs_random" in row) == (name != "random")
        assert figures["budgets"]["30"]["reward_mean"] >= figures["budgets"]["10"]["reward_mean"]
    assert set(result["proxy"]["strategies"]) == set(bench.STRATEGIES)
    assert (tmp_path / "s.png").is_file()


@pytest.mark.parametrize("recipe", sorted((REPO / "configs" / "search").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_search_recipe_loads_and_its_settings_are_valid(recipe, tmp_path):
    from nasnet_zoo.search.settings import validate_config

    cfg = load_config(SearchConfig(), recipe, ["output_dir", str(tmp_path / "run")])
    if cfg.reward in ("proxy", "shared"):  # their data folder is the user's: check everything else
        cfg.data_dir = str(Path(__file__).parent / "fixtures")
        with pytest.raises(SearchConfigError, match="CIFAR-10|data"):
            validate_config(cfg)
    else:
        validate_config(cfg)
