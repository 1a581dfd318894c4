"""The statistics and the resumable pieces of bench/search_rank.py and bench/search_h2h.py (the benchmarks
themselves run for minutes to hours; `--size quick` is their smoke test)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nasnet_zoo.search import SearchConfig
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kendall_tau_and_its_bootstrap_interval():
    rank = _bench("search_rank")
    x = np.linspace(0.1, 0.9, 21)
    same = rank.kendall(x, 2 * x + 1, 200, seed=0)
    assert same["tau"] == pytest.approx(1.0) and same["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert rank.kendall(x, -x, 200, seed=0)["tau"] == pytest.approx(-1.0)
    noisy = rank.kendall(x, x + np.random.default_rng(0).normal(0, 0.3, 21), 500, seed=0)
    low, high = noisy["ci95"]
    assert low < noisy["tau"] < high and high - low > 0.1 and 0 < noisy["p_value"] < 1
    flat = rank.kendall(x, np.full(21, 0.1), 50, seed=0)  # every cell at chance: no ranking at all
    assert flat["tau"] is None


def test_cells_to_rank_are_in_the_space_and_start_with_nasnet_a_blocks():
    from nasnet_zoo.genotypes import NASNET_A
    from nasnet_zoo.search.spaces import NASNetSpace

    cells = _bench("search_rank").cells_to_rank(20, seed=0)
    space = NASNetSpace()
    assert len(cells) == 21 and len({str(c.to_dict()["normal"]) for c in cells}) == 21
    assert cells[0].normal.blocks == NASNET_A.normal.blocks and cells[0].reduction.blocks == NASNET_A.reduction.blocks
    for cell in cells:  # every cell is a path of the supernet: the space round-trips it, concat included
        again = space.to_genotype(space.to_decisions(cell))
        assert (again.normal, again.reduction) == (cell.normal, cell.reduction)


def test_h2h_search_statistics_and_a_finished_search_is_not_run_again(tmp_path):
    h2h = _bench("search_h2h")
    cfg = SearchConfig(reward="oracle", backend="inline", strategy="random", children=30,
                       output_dir=str(tmp_path / "run"))
    first = h2h.run_search(cfg)
    rewards = sorted({r["reward"] for r in read_jsonl(tmp_path / "run" / "journal.jsonl")}, reverse=True)
    stats = h2h.search_rewards(tmp_path / "run")
    assert stats["distinct"] == 30 and stats["top1"] == rewards[0]
    all_rewards = sorted((r["reward"] for r in read_jsonl(tmp_path / "run" / "journal.jsonl")), reverse=True)
    assert stats["top5"] == pytest.approx(np.mean(all_rewards[:5]))
    assert stats["top25"] == pytest.approx(np.mean(all_rewards[:25]))
    lines = (tmp_path / "run" / "journal.jsonl").read_bytes()
    assert h2h.run_search(cfg) == first  # read back, nothing run
    assert (tmp_path / "run" / "journal.jsonl").read_bytes() == lines
    cfg.children = 35  # a bigger budget continues the same search
    assert h2h.run_search(cfg)["children"] == 35 and len(read_jsonl(tmp_path / "run" / "journal.jsonl")) == 35


def test_h2h_tables():
    h2h = _bench("search_h2h")
    ms = {"mean": 0.5, "std": 0.01, "n": 3}
    report = {"reward": "shared", "children": 1000, "seeds": 3, "retrain_top": 3, "retrain_recipe": "cifar_cpu",
              "search": {"ppo": {"top1": ms, "top5": ms, "top25": ms}},
              "retrained": {"ppo": {"mean": 41.5, "std": 1.25, "n": 9, "best": 43.0}}}
    table = h2h.markdown_tables(report)
    assert "| ppo | 0.5000 ± 0.0100 | 0.5000 ± 0.0100 | 0.5000 ± 0.0100 |" in table
    assert "| ppo | 9 | 41.50 | 1.25 | 43.00 |" in table


def test_h2h_scores_a_genotype_scored_again_at_its_mean(tmp_path):
    from nasnet_zoo.search.spaces import NASNetSpace
    from nasnet_zoo.utils.io import append_jsonl

    h2h = _bench("search_h2h")
    space = NASNetSpace()
    a, b, c = (space.to_genotype(space.random_decisions(np.random.default_rng(s))).to_dict() for s in (1, 2, 3))
    for genotype, reward, status in ((a, 0.9, "ok"), (b, 0.6, "ok"), (a, 0.1, "ok"), (c, 0.95, "nan")):
        append_jsonl(tmp_path / "journal.jsonl", {"genotype": genotype, "reward": reward, "status": status})
    children = h2h.distinct_children(tmp_path)
    assert [round(r, 6) for _, r in children] == [0.6, 0.5]  # a's two scores averaged; the failed child left out
    assert h2h.search_rewards(tmp_path)["top1"] == pytest.approx(0.6)
