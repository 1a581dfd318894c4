"""bench/nasbench201_shared_search.py end to end at a tiny size: warm-up, three searches from it, the table's
verdict, and resume by folder (a second invocation continues, a third redoes nothing)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from nasnet_zoo.search.spaces import NASBench201Space, genotype_from_dict
from nasnet_zoo.search.table import NASBENCH201_CIFAR10, BenchmarkTable
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
TINY = ["child.num_conv_filters", "4", "child.image_size", "8", "child.train_size", "256", "child.val_size", "64",
        "shared.eval_images", "32", "shared.eval_batch_size", "16", "shared.warmup_steps", "3",
        "shared.train_steps", "2", "ppo.minibatch", "5", "child.batch_size", "16"]
PHASES = ("warmup", "random", "ppo", "evolution")


def _bench():
    spec = importlib.util.spec_from_file_location("nb201_shared_bench", REPO / "bench" / "nasbench201_shared_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_runs_judges_by_the_table_and_resumes_by_folder(tmp_path, cifar_or_digits):
    bench, root, out = _bench(), tmp_path / "runs", tmp_path / "result.json"

    def invoke(children: int, budgets: list[int]) -> dict:
        args = ["--data-dir", str(cifar_or_digits), "--seeds", "0", "1", "--children", str(children),
                "--budgets", *map(str, budgets), "--uniform-cells", "5", "--root", str(root), "--out", str(out), *TINY]
        assert bench.main(args) == 0
        return json.loads(out.read_text())

    def journals() -> dict[str, list[dict]]:
        return {f"{s}/{p}": read_jsonl(root / f"seed{s}" / p / "journal.jsonl") for s in (0, 1) for p in PHASES}

    def sessions() -> dict[str, int]:
        return {f"{s}/{p}": len(read_jsonl(root / f"seed{s}" / p / "bench_sessions.jsonl"))
                for s in (0, 1) for p in PHASES}

    first = invoke(5, [5])
    before = journals()
    assert {k: len(v) for k, v in before.items()} == {f"{s}/{p}": 5 for s in (0, 1) for p in PHASES}
    # every search started from its seed's warm-up and trained on from there (2 steps a round of 5 children)
    for s in (0, 1):
        for p in PHASES[1:]:
            config = (root / f"seed{s}" / p / "config.yaml").read_text()
            assert str(root / f"seed{s}" / "warmup") in config
        assert {r["info"]["train_step"] for r in before[f"{s}/warmup"]} == {3}  # the warm-up only, then nothing

    # a longer budget continues the searches and leaves the warm-up alone
    second = invoke(10, [5, 10])
    after = journals()
    for key, records in after.items():
        assert records[:5] == before[key]
        assert len(records) == (5 if key.endswith("warmup") else 10)
    assert sessions() == {k: 1 if k.endswith("warmup") else 2 for k in after}
    assert second["summary"]["random"]["5"] == first["summary"]["random"]["5"]  # a budget's figures do not move

    # a third invocation redoes nothing and reports the same
    third = invoke(10, [5, 10])
    assert journals() == after and third["summary"] == second["summary"] and third["runs"] == second["runs"]

    # the table's verdict: rank 1 of each search's first B children, looked up in the 200-epoch columns
    table = BenchmarkTable(NASBENCH201_CIFAR10, NASBench201Space(), ("cifar10_valid_200ep", "cifar10_test_200ep"))
    top = json.loads((root / "seed1" / "ppo" / "top_genotypes.json").read_text())[0]
    row = table.row(genotype_from_dict(top["genotype"]))
    judged = third["runs"]["1"]["ppo"]["budgets"]["10"]
    assert judged["arch"] == table.arches[row]
    assert judged["cifar10_test_200ep"] == pytest.approx(table.values["cifar10_test_200ep"][row])
    assert judged["best_queried_cifar10_valid_200ep"] >= judged["cifar10_valid_200ep"]
    assert set(third["summary"]) == {"warm-up, best of N uniform", "random", "ppo", "evolution"}
    assert third["summary"]["evolution"]["10"]["cifar10_test_200ep"]["n"] == 2
    assert third["table_optimum"]["cifar10_test_200ep"] == pytest.approx(94.3733)
    assert set(third["table_reward_searches"]) >= {"random", "ppo", "evolution"}  # docs/figures/search_strategies.json
    assert set(third["published_weight_sharing_test"]) == {"RSPS", "ENAS", "DARTS", "SETN", "GDAS"}
    assert third["runs"]["0"]["warmup"]["wall_s"] > 0 and third["conditions"]["children"] == 10

    # --warmup-from: every seed starts from a supernet trained elsewhere, no warm-up steps of its own
    other = tmp_path / "fixed"
    assert bench.main(["--data-dir", str(cifar_or_digits), "--seeds", "0", "--strategies", "random", "--children", "5",
                       "--budgets", "5", "--uniform-cells", "5", "--root", str(other), "--out", str(tmp_path / "f.json"),
                       "--warmup-from", str(root / "seed0" / "warmup"), *TINY, "shared.train_steps", "0"]) == 0
    fixed = read_jsonl(other / "seed0" / "warmup" / "journal.jsonl")
    assert {r["info"]["train_step"] for r in fixed} == {0}
    # same weights, same seed, same uniform cells: the same rewards as the warm-up it was taken from
    assert [r["reward"] for r in fixed] == [r["reward"] for r in after["0/warmup"][:5]]
