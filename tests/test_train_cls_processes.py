"""Training across processes: two gloo processes under torchrun stay in lockstep, and a SIGKILLed run resumed
with ``--resume`` reproduces the uninterrupted run step for step (same count, learning rates and losses)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasnet_zoo.utils.io import read_jsonl
from process_helpers import killed_after_logging
from test_train_cls import TINY, write_fake_cifar

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

DDP_WORKER = """
import sys, torch, torch.distributed as dist
from nasnet_zoo.config import load_config
from nasnet_zoo.training import TrainConfig
from nasnet_zoo.training.config import recipe_path
from nasnet_zoo.training.engine import Trainer, prepare
cfg = load_config(TrainConfig(), recipe_path("cifar_cpu"), sys.argv[2:])
setup = prepare(cfg)
assert setup.info.world_size == 2 and dist.get_backend() == "gloo"
trainer = Trainer(cfg, setup, resume=False)
trainer.run()
torch.save({k: v for k, v in trainer.model.named_parameters()}, f"{sys.argv[1]}/rank{setup.info.rank}.pt")
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", per_batch=16)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_gloo_processes_keep_identical_weights(fake_cifar, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tmp_path), *TINY, "data.dir", str(fake_cifar), "output_dir", str(out), "solver.max_steps", "3"]
    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # only rank 0 logs
    assert (out / "model_final.safetensors").is_file()


def cli(fake_cifar: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "tools" / "train_cls.py"), "--recipe", "cifar_cpu", "--data-dir",
            str(fake_cifar), "--output-dir", str(out), "--max-steps", "6", *extra, *TINY, "checkpoint_period", "2"]


def last_per_step(out: Path) -> dict[int, dict]:
    """metrics.jsonl after a resume repeats the steps between the checkpoint and the kill: keep the last."""
    return {r["step"]: r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_after_kill_reproduces_the_uninterrupted_run(fake_cifar, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = subprocess.run(cli(fake_cifar, full), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    command = cli(fake_cifar, killed)
    proc = subprocess.run(killed_after_logging(command[1], command[2:], "step", 3), env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]  # killed right after logging step 3
    assert torch.load(killed / "checkpoint.pt")["step"] == 2         # so step 3 is lost and run again

    resumed = subprocess.run([sys.executable, str(REPO / "tools" / "train_cls.py"), "--output-dir", str(killed),
                              "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = last_per_step(full), last_per_step(killed)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert [a[s]["lr"] for s in a] == [b[s]["lr"] for s in a]
    assert [a[s]["loss"] for s in a] == pytest.approx([b[s]["loss"] for s in a], rel=1e-5)
    final_a, final_b = (read_jsonl(o / "metrics.jsonl")[-1] for o in (full, killed))
    assert final_a["step"] == final_b["step"] == 6 and final_a["top1"] == pytest.approx(final_b["top1"])
