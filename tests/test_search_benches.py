"""The statistics and the resumable pieces of bench/search_rank.py and bench/search_h2h.py (the benchmarks
themselves run for minutes to hours; `--size quick` is their smoke test)."""
from __future__ import annotations

import importlib.util
import json
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


def test_rank_agreement_on_tables_whose_answer_is_known():
    from nasnet_zoo.search.rank_fidelity import rank_agreement

    x = np.linspace(0.1, 0.9, 21)
    same = rank_agreement(2 * x + 1, x, bootstrap=200)
    assert same["n"] == 21 and same["kendall"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    assert same["kendall_lo"] == pytest.approx(1.0) and same["kendall_hi"] == pytest.approx(1.0)
    reversed_ = rank_agreement(-x, x, bootstrap=200)
    assert reversed_["kendall"] == pytest.approx(-1.0) and reversed_["spearman_hi"] == pytest.approx(-1.0)
    # one swapped pair of 4: 5 concordant, 1 discordant pair -> tau 4/6; rho = 1 - 6 * 2 / (4 * 15) = 0.8
    swapped = rank_agreement([1, 3, 2, 4], [1, 2, 3, 4], bootstrap=200)
    assert swapped["kendall"] == pytest.approx(4 / 6) and swapped["spearman"] == pytest.approx(0.8)
    # tau-b with one tie in y: 5 concordant, 0 discordant, 6 and 5 untied pairs -> 5 / sqrt(6 * 5)
    tied = rank_agreement([1, 2, 3, 4], [1, 1, 2, 3], bootstrap=200)
    assert tied["kendall"] == pytest.approx(5 / np.sqrt(30))
    noisy = x + np.random.default_rng(0).normal(0, 0.3, 21)
    r = rank_agreement(noisy, x, bootstrap=500, seed=3)
    assert r["kendall_lo"] < r["kendall"] < r["kendall_hi"] and r["kendall_hi"] - r["kendall_lo"] > 0.1
    assert 0 < r["kendall_p"] < 1 and r["degenerate_resamples"] == 0
    assert rank_agreement(noisy, x, bootstrap=500, seed=3) == r  # seeded
    flat = rank_agreement(np.full(21, 0.1), x, bootstrap=50)  # every cell at chance: no ranking at all
    assert flat["kendall"] is None and flat["kendall_lo"] is None and flat["degenerate_resamples"] == 50
    with pytest.raises(ValueError):
        rank_agreement([1.0, 2.0], [1.0, 2.0])


def test_the_cells_are_distinct_uniform_cells_of_the_searched_space():
    from nasnet_zoo.genotypes import NASNET_A
    from nasnet_zoo.search.spaces import NASNetSpace

    rank = _bench("search_rank")
    enas = NASNetSpace(5, "enas", "add")
    cells = rank.draw_cells(enas, 30, seed=0)
    assert len(cells) == 30 and len({str(c.to_dict()) for c in cells}) == 30  # NASNet-A is outside this space
    for cell in cells:  # every cell is a path of the supernet: the space round-trips it, concat included
        again = enas.to_genotype(enas.to_decisions(cell))
        assert (again.normal, again.reduction) == (cell.normal, cell.reduction)
    full = rank.draw_cells(NASNetSpace(), 20, seed=0)
    assert len(full) == 21 and full[0].normal.blocks == NASNET_A.normal.blocks
    assert full[0].reduction.blocks == NASNET_A.reduction.blocks


def test_search_rank_quick_runs_in_pieces_and_resumes(tmp_path, capsys, cifar_dir):
    rank = _bench("search_rank")
    out = tmp_path / "rank"
    args = ["--size", "quick", "--out", str(out), "--data-dir", str(cifar_dir)]
    assert rank.main([*args, "--part", "standalone"]) == 0
    lines = (out / "standalone.jsonl").read_text().splitlines()
    assert len(lines) == 10 and {json.loads(x)["seed"] for x in lines} == {0, 1}
    with pytest.raises(SystemExit, match="--part shared"):
        rank.main([*args, "--part", "report"])
    # a run killed after 7 children: the next one trains the 3 missing ones and keeps the 7 lines as they are
    (out / "standalone.jsonl").write_text("\n".join(lines[:7]) + "\n")
    capsys.readouterr()
    assert rank.main([*args, "--part", "standalone"]) == 0
    assert "7 of 10 children cached, 3 to train" in capsys.readouterr().out
    again = (out / "standalone.jsonl").read_text().splitlines()
    assert len(again) == 10 and again[:7] == lines[:7]
    # the supernet in two sittings (10 steps, then 10 more) equals one of 20 steps
    assert rank.main([*args, "--part", "shared", "--shared-steps", "10"]) == 0
    assert rank.main([*args, "--part", "all"]) == 0
    assert "resumed the supernet at step 10" in capsys.readouterr().out
    result = json.loads((out / "search_rank.json").read_text())
    once = tmp_path / "once"
    once.mkdir()
    for name in ("cells.json", "standalone.jsonl"):
        (once / name).write_bytes((out / name).read_bytes())
    assert rank.main([*args[:2], "--out", str(once), "--data-dir", str(cifar_dir), "--part", "shared"]) == 0
    assert json.loads((once / "shared.json").read_text())["accuracy"] == [c["shared"] for c in result["per_cell"]]
    assert result["cells"] == 5 and result["standalone"]["seeds"] == 2 and result["shared"]["steps"] == 20
    assert set(result["figures"]) >= {"shared_vs_standalone_mean", "standalone_seed0_vs_seed1"}
    assert result["standalone"]["threads"] == [1] and result["standalone"]["seconds_per_child"]["total"] > 0
    with pytest.raises(SystemExit, match="other cells"):  # the cells of a folder are fixed
        rank.main([*args, "--part", "report", "--genotypes", "6"])


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
