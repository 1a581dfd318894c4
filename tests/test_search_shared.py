"""Weight sharing: the supernet is the one NASNet with shared cells whose paths are the stand-alone children, the
one search loop with a shared reward (both spaces), the fixed evaluation set, resume after SIGKILL, torchrun data
parallelism, AMP code paths and the errors a shared search gives before any work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nasnet_zoo import NASNET_A, build_nasnet
from nasnet_zoo.layers.ops import FactorizedReduce
from nasnet_zoo.search.spaces import NASNetSpace
from nasnet_zoo.search.supernet import Supernet

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


SPACES = {"reduced": NASNetSpace(ops="enas", combiners="add"), "full": NASNetSpace()}


def _genotypes(space: NASNetSpace, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [space.to_genotype(space.random_decisions(rng)) for _ in range(n)]


@pytest.fixture(scope="module", params=sorted(SPACES))
def supernet(request) -> Supernet:
    torch.manual_seed(0)
    return Supernet(SPACES[request.param], cells_per_stack=1, num_conv_filters=4, image_size=8)


def test_the_supernet_is_the_one_nasnet_with_shared_cells(supernet):
    from nasnet_zoo.nasnet import NASNet
    from nasnet_zoo.search.supernet import SharedCell

    assert isinstance(supernet, NASNet) and all(isinstance(c, SharedCell) for c in supernet.cells.values())
    assert supernet.config.cell_output == "fixed" and supernet.num_features == 4 * 4  # F x 2 reductions, any path
    # one ChoiceOp per (input width, stride) in each cell, holding every op of the space once
    for cell in supernet.cells.values():
        for choice in cell.choices.values():
            assert tuple(choice.candidates) == supernet.space.ops


def test_the_extracted_child_computes_what_the_supernet_path_computes(supernet):
    x = torch.randn(6, 3, 8, 8)
    for genotype in _genotypes(supernet.space, 5, seed=1):
        child = supernet.extract(genotype).train()  # batch statistics, like the supernet's BatchNorm
        assert child.config.cell_output == "fixed"  # the documented build_nasnet option
        with torch.no_grad():
            torch.testing.assert_close(supernet(x, genotype), child(x), rtol=1e-5, atol=1e-5)
        assert sum(isinstance(m, FactorizedReduce) for m in child.modules()) >= 2  # reductions are wired in
    # the child is an ordinary create_model network: same weights by name as one built directly
    direct = build_nasnet(genotype, cells_per_stack=1, num_conv_filters=4, stem="cifar", num_classes=10,
                          image_size=8, aux_head=False, cell_output="fixed")
    assert {k: v.shape for k, v in direct.state_dict().items()} == {k: v.shape for k, v in child.state_dict().items()}


def test_only_the_sampled_candidates_get_gradients(supernet):
    genotype = _genotypes(supernet.space, 1, seed=2)[0]
    supernet.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(supernet(torch.randn(4, 3, 8, 8), genotype), torch.arange(4)).backward()
    for cell in supernet.cells.values():
        widths = cell.state_widths(cell.genotype)
        used = {(f"{widths[i]}_{cell._stride(i)}", op) for block in cell.genotype.blocks
                for i, op in zip(block.inputs, block.ops)}
        for key, choice in cell.choices.items():
            for op, candidate in choice.candidates.items():
                grads = [p.grad is not None for p in candidate.parameters()]
                assert all(grads) if (key, op) in used else not any(grads), (cell.genotype, key, op)
    supernet.zero_grad(set_to_none=True)


def test_a_genotype_outside_the_space_is_refused_by_name():
    from nasnet_zoo.genotypes import GenotypeError

    net = Supernet(SPACES["reduced"], cells_per_stack=1, num_conv_filters=4, image_size=8)
    with pytest.raises(GenotypeError, match="outside this space"):
        net(torch.randn(2, 3, 8, 8), NASNET_A)  # its reduction cell uses sep_conv_7x7


def test_fair_sampling_uses_every_op_once_at_every_op_decision():
    from nasnet_zoo.search.shared import fair_paths

    for space in (SPACES["reduced"], SPACES["full"]):
        paths = fair_paths(space, np.random.default_rng(0))
        assert len(paths) == len(space.ops)
        decisions = np.array([space.to_decisions(g) for g in paths])
        for t, (kind, _) in enumerate(space.steps()):
            if kind == "op":
                assert sorted(decisions[:, t]) == list(range(len(space.ops)))


# ---- the search loop ------------------------------------------------------------------------------------------

TINY = ["child.num_conv_filters", "4", "child.cells", "1", "child.image_size", "8", "child.batch_size", "16",
        "child.val_size", "64", "child.train_size", "256", "shared.eval_images", "32", "shared.eval_batch_size", "16",
        "shared.train_steps", "3",
        "shared.controller_updates", "1", "ppo.minibatch", "5", "shared.threads", "1"]


def _cli():
    import importlib.util
    spec = importlib.util.spec_from_file_location("search_cli", REPO / "tools" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(out: Path, cifar_dir: Path, children: int, *opts: str):
    from nasnet_zoo.config import load_config
    from nasnet_zoo.search.settings import SearchConfig

    settings = ["reward", "shared", "data_dir", str(cifar_dir), "children", str(children), "output_dir", str(out)]
    return load_config(SearchConfig(), None, [*settings, *TINY, *opts])


def _search_args(out: Path, cifar_dir: Path, children: int, *flags: str, opts: tuple[str, ...] = ()) -> list[str]:
    return ["--no-progress", "--reward", "shared", "--data-dir", str(cifar_dir), "--children", str(children),
            "--output-dir", str(out), *flags, *TINY, *opts]


@pytest.mark.parametrize("strategy", ["ppo", "random", "evolution"])
def test_a_shared_search_leaves_the_outputs_of_a_proxy_search(tmp_path, cifar_dir, strategy):
    """Through the command line for PPO (with the report), through ``run_search`` for random search and evolution."""
    from nasnet_zoo.genotypes import Genotype
    from nasnet_zoo.search.journal import genotype_key
    from nasnet_zoo.search.state import load_search_state
    from nasnet_zoo.utils.io import read_jsonl

    from nasnet_zoo.search.runner import run_search

    out = tmp_path / strategy
    if strategy == "ppo":
        assert _cli().main(_search_args(out, cifar_dir, 15, "--strategy", strategy)) == 0
    else:
        run_search(_config(out, cifar_dir, 15, "strategy", strategy), progress=False)
    records = read_jsonl(out / "journal.jsonl")
    assert [r["index"] for r in records] == list(range(15))
    assert all(r["status"] == "ok" and r["strategy"] == strategy and 0.0 <= r["reward"] <= 1.0 for r in records)
    assert {r["reward"] * 32 % 1 for r in records} == {0.0}  # accuracies on the 32 evaluation images
    assert all(r["info"]["eval_images"] == 32 for r in records)
    assert len({r["info"]["train_step"] for r in records}) == 3  # 3 rounds, each after 3 more training steps
    assert (out / "metrics.jsonl").is_file() and (out / "config.yaml").is_file() and any((out / "tensorboard").iterdir())
    if strategy == "ppo":
        for name in ("top_genotypes.json", "rewards.png", "cells/rank1.png"):
            assert (out / name).is_file(), name
        import json
        top = json.loads((out / "top_genotypes.json").read_text())
        keys = [genotype_key(Genotype.from_dict(t["genotype"])) for t in top]
        distinct = {genotype_key(Genotype.from_dict(r["genotype"])) for r in records}
        assert len(set(keys)) == len(keys) == min(10, len(distinct))
    metrics = read_jsonl(out / "metrics.jsonl")
    assert any("shared/loss" in m for m in metrics)
    state = load_search_state(out / "search_state.pt")  # the one checkpoint: strategy and shared weights
    assert (state["observed"], state["evaluator"]["step"], state["evaluator"]["rounds"]) == (15, 9, 3)
    if strategy == "ppo":
        assert state["strategy"]["updates"] == 3 and any("controller/loss" in m for m in metrics)
    if strategy == "evolution":  # the population is the 10 newest rewarded children
        assert state["strategy"]["population"] == [[r["decisions"], r["reward"]] for r in records[-10:]]


def test_every_child_is_scored_on_the_same_fixed_evaluation_images(tmp_path, cifar_dir):
    from nasnet_zoo.search.runner import make_search

    run = make_search(_config(tmp_path / "fixed", cifar_dir, 5), progress=False)
    evaluator = run.evaluator
    torch.testing.assert_close(evaluator.eval_x, evaluator.data.val_x[:32])  # the first shared.eval_images
    net, space = evaluator.supernet, evaluator.space
    for genotype in _genotypes(space, 3, seed=5):
        with torch.no_grad():  # by hand: the same 32 images in batches of 16, whichever child it is
            correct = sum(int((net(evaluator.data.val_x[i:i + 16], genotype).argmax(1)
                               == evaluator.data.val_y[i:i + 16]).sum()) for i in (0, 16))
        assert evaluator(genotype).reward == correct / 32 == evaluator(genotype).reward
    run.lock.release()


@pytest.mark.slow
def test_resume_continues_a_shared_search_and_falls_back_to_the_previous_checkpoint(tmp_path, cifar_dir):
    from nasnet_zoo.search.runner import run_search
    from nasnet_zoo.search.state import load_search_state
    from nasnet_zoo.utils.io import read_jsonl

    part = tmp_path / "part"
    run_search(_config(part, cifar_dir, 10), progress=False)
    before = read_jsonl(part / "journal.jsonl")
    (part / "search_state.pt").write_bytes(b"damaged")  # the latest checkpoint is unreadable: use the previous
    with pytest.warns(UserWarning, match="trying the previous checkpoint"):
        run_search(_config(part, cifar_dir, 20), resume=True, progress=False)
    after = read_jsonl(part / "journal.jsonl")
    assert after[:10] == before and [r["index"] for r in after] == list(range(20))
    state = load_search_state(part / "search_state.pt")
    assert state["observed"] == 20 and state["evaluator"]["rounds"] >= 4  # training went on from the checkpoint


def _start(out: Path, cifar_dir: Path, children: int, resume: bool = False) -> subprocess.Popen:
    args = ["--no-progress", "--output-dir", str(out), "--resume"] if resume else _search_args(out, cifar_dir, children)
    return subprocess.Popen([sys.executable, str(REPO / "tools" / "search.py"), *args],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_then_resume_loses_no_child_and_writes_none_twice(tmp_path, cifar_dir):
    from nasnet_zoo.search.state import load_search_state
    from nasnet_zoo.utils.io import read_jsonl

    killed = tmp_path / "killed"
    process, journal = _start(killed, cifar_dir, 25), killed / "journal.jsonl"
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 12:  # mid-round: 10 checkpointed, 2 more
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert process.wait(timeout=60) == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    before = read_jsonl(journal)
    assert 12 <= len(before) < 25
    resumed = _start(killed, cifar_dir, 25, resume=True)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read().decode()[-2000:]
    after = read_jsonl(journal)
    assert after[:len(before)] == before  # journaled children are never rewritten
    assert [r["index"] for r in after] == list(range(25))  # none lost, none written twice
    assert {r["session"] for r in after[len(before):]} == {1}
    assert load_search_state(killed / "search_state.pt")["evaluator"]["rounds"] == 5  # every round trained once


def test_a_latency_target_shapes_the_shared_reward(tmp_path, cifar_dir):
    from nasnet_zoo.search.latency import soft_constraint_reward
    from nasnet_zoo.search.runner import run_search
    from nasnet_zoo.utils.io import read_jsonl

    out = tmp_path / "latency"
    run_search(_config(out, cifar_dir, 5, "latency.target_ms", "2.0", "latency.image_size", "8",
                       "latency.cells_per_stack", "1", "latency.num_conv_filters", "4", "latency.runs", "3",
                       "latency.warmup", "1"), progress=False)
    records = read_jsonl(out / "journal.jsonl")
    assert len(records) == 5
    for r in records:
        assert r["latency_ms"] > 0 and r["accuracy"] * 32 % 1 == 0
        assert r["reward"] == pytest.approx(soft_constraint_reward(r["accuracy"], r["latency_ms"], 2.0))


# ---- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, opts, message", [
    (["--backend", "local"], [], "--reward shared does not use --backend local: its children share one supernet"),
    (["--backend", "ray"], [], "--reward shared does not use --backend ray"),
    ([], ["shared.amp", "fp8"], "shared.amp must be one of off, auto, fp16, bf16; got 'fp8'"),
    ([], ["shared.controller_updates", "0"], "shared.controller_updates, shared.eval_images and "),
    ([], ["shared.sampling", "greedy"], "unknown shared.sampling 'greedy'; expected one of uniform, strategy, fair"),
    ([], ["controller.ops", "sep_conv_9x9"], "op set 'sep_conv_9x9' is not a valid choice"),
    ([], ["shared.device", "cuda:0"], "shared.device='cuda:0' but torch sees no CUDA GPU"),
])
def test_bad_shared_settings_fail_before_any_work(tmp_path, cifar_dir, capsys, flags, opts, message):
    if "cuda" in message and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    assert _cli().main(_search_args(out, cifar_dir, 5, *flags, opts=tuple(opts))) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_resume_with_another_reward_is_refused(tmp_path, cifar_dir, capsys):
    from nasnet_zoo.search.runner import SearchRun, make_search, run_search
    from nasnet_zoo.search.settings import SearchConfig, SearchConfigError

    cli, out = _cli(), tmp_path / "out"
    run_search(_config(out, cifar_dir, 5), progress=False)
    assert cli.main(["--no-progress", "--output-dir", str(out), "--resume", "--reward", "proxy"]) == 2
    assert "--resume cannot change reward" in capsys.readouterr().err
    proxy = SearchConfig(reward="proxy", data_dir=str(cifar_dir), output_dir=str(out))
    with pytest.raises(SearchConfigError, match="holds a shared-weight search"):
        SearchRun(proxy, resume=True)
    oracle = tmp_path / "oracle"
    assert cli.main(["--no-progress", "--reward", "oracle", "--backend", "inline", "--children", "20",
                     "--output-dir", str(oracle)]) == 0
    shared = SearchConfig(reward="shared", data_dir=str(cifar_dir), output_dir=str(oracle))
    with pytest.raises(SearchConfigError, match="holds a search without shared weights"):
        make_search(shared, resume=True)


def test_a_resume_with_other_network_sizes_is_refused_and_init_from_takes_the_weights(tmp_path, cifar_dir):
    from nasnet_zoo.search.runner import make_search, run_search
    from nasnet_zoo.search.settings import SearchConfigError
    from nasnet_zoo.search.state import load_search_state

    out = tmp_path / "out"
    run_search(_config(out, cifar_dir, 5), progress=False)
    with pytest.raises(SearchConfigError, match="shared weights; this supernet has"):
        make_search(_config(out, cifar_dir, 10, "child.num_conv_filters", "8"), resume=True)
    trained = load_search_state(out / "search_state.pt")["evaluator"]["weights"]
    run = make_search(_config(tmp_path / "next", cifar_dir, 5, "shared.init_from", str(out)), progress=False)
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in run.evaluator.params]), trained)
    assert run.evaluator.step == 0  # the weights only: a fresh optimizer and schedule
    run.lock.release()
    with pytest.raises(SearchConfigError, match="shared.init_from: .* holds no shared-weight search checkpoint"):
        make_search(_config(tmp_path / "bad", cifar_dir, 5, "shared.init_from", str(tmp_path)), progress=False)


def test_a_shared_search_in_the_nasbench201_space_runs_the_same_loop(tmp_path, cifar_dir):
    from nasnet_zoo.search.nasbench201_supernet import Supernet as NASBench201Supernet
    from nasnet_zoo.search.runner import make_search
    from nasnet_zoo.utils.io import read_jsonl

    out = tmp_path / "nb201"
    run = make_search(_config(out, cifar_dir, 10, "space", "nasbench201", "strategy", "evolution",
                              "shared.warmup_steps", "2", "shared.sampling", "uniform"), progress=False)
    assert isinstance(run.evaluator.supernet, NASBench201Supernet)
    assert run.run()["train_steps"] == 2 + 2 * 3
    records = read_jsonl(out / "journal.jsonl")
    assert len(records) == 10 and all("arch" in r["genotype"] and r["reward"] * 32 % 1 == 0 for r in records)


# ---- devices and processes ------------------------------------------------------------------------------------

def test_amp_settings_and_the_bf16_autocast_path_on_cpu(tmp_path, cifar_dir):
    from nasnet_zoo.engine import resolve_amp
    from nasnet_zoo.utils.io import read_jsonl

    assert resolve_amp("auto", torch.device("cuda")) == torch.float16
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16 and resolve_amp("off", torch.device("cuda")) is None
    from nasnet_zoo.search.runner import make_search

    out = tmp_path / "bf16"
    run = make_search(_config(out, cifar_dir, 10, "shared.amp", "bf16"), progress=False)
    assert run.evaluator.amp_dtype == torch.bfloat16 and not run.evaluator.scaler.is_enabled()
    run.run()
    assert all(0.0 <= r["reward"] <= 1.0 for r in read_jsonl(out / "journal.jsonl"))


DDP_WORKER = """
import sys, torch, torch.distributed as dist
from nasnet_zoo.config import load_config
from nasnet_zoo.search.runner import make_search
from nasnet_zoo.search.settings import SearchConfig
cfg = load_config(SearchConfig(), None, sys.argv[2:])
run = make_search(cfg, progress=False)
assert run.info.world_size == 2 and dist.get_backend() == "gloo"
summary = run.run()
torch.save(run.evaluator.supernet.state_dict(), f"{sys.argv[1]}/rank{run.info.rank}.pt")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_gloo_processes_train_the_shared_weights_in_lockstep(tmp_path, cifar_dir):
    from nasnet_zoo.utils.io import read_jsonl

    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    out = tmp_path / "run"
    settings = ["reward", "shared", "data_dir", str(cifar_dir), "children", "10", "output_dir", str(out), *TINY]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tmp_path), *settings]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    initial = Supernet(NASNetSpace(), cells_per_stack=1, num_conv_filters=4, image_size=8).state_dict()
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)  # trained, not merely equal at init
    records = read_jsonl(out / "journal.jsonl")
    assert [r["index"] for r in records] == list(range(10))  # one writer: rank 0
    # each process scored its half of the 32 evaluation images; the reward counts all 32
    assert {r["reward"] * 32 % 1 for r in records} == {0.0}
