"""Classification training: determinism, ScheduledDropPath and aux loss, schedules, exports, errors, retraining.

Tiny NASNet-A (1 cell per stack, 8 filters) on a small synthetic CIFAR-10 pickle folder, a few steps each.
Multi-process and kill/resume tests are in test_train_cls_processes.py.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from embedded_data import write_digits_as_cifar
from nasnet_zoo import NASNET_A, GenotypeError, create_model
from nasnet_zoo.config import load_config
from nasnet_zoo.data.cifar import CifarLayoutError
from nasnet_zoo.data.folder import FolderLayoutError
from nasnet_zoo.layers.drop_path import ScheduledDropPath
from nasnet_zoo.training import ArchitectureMismatchError, TrainConfig, evaluate_only, load_trained, retrain_top, train
from nasnet_zoo.training.config import recipe_path
from nasnet_zoo.training.data import build_data
from nasnet_zoo.training.engine import Trainer, prepare
from nasnet_zoo.training.genotype_source import ranked_genotypes
from nasnet_zoo.training.optim import RMSpropTF, lr_factor
from nasnet_zoo.training.retrain import format_ranking
from nasnet_zoo.training.transforms import Cutout
from nasnet_zoo.utils.io import read_jsonl

TINY = ["model.cells_per_stack", "1", "model.num_conv_filters", "8", "model.stem_multiplier", "1.0",
        "solver.batch_size", "8", "log_period", "1", "channels_last", "false", "device", "cpu", "threads", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def write_fake_cifar(root: Path, per_batch: int = 8, test: int = 16, seed: int = 0) -> Path:
    """CIFAR-10's pickle layout with images whose mean colour depends on the class (so there is signal)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 64, (n, 3, 32, 32)) + (labels * 19)[:, None, None, None]
        return {b"data": images.astype(np.uint8).reshape(n, 3072), b"labels": labels.tolist()}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(root / name, "wb") as f:
            pickle.dump(batch(test if name == "test_batch" else per_batch), f)
    return root


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory) -> Path:
    return write_fake_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


def tiny_config(data_dir: Path, out: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig(), recipe_path("cifar_cpu"),
                       [*TINY, "data.dir", str(data_dir), "output_dir", str(out), *extra])


@pytest.fixture(scope="module")
def trained_run(fake_cifar, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    result = train(tiny_config(fake_cifar, out, "solver.max_steps", "3"))
    return out, result


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


def test_same_seed_same_first_losses(fake_cifar, trained_run, tmp_path):
    out, _ = trained_run
    again = tmp_path / "again"
    train(tiny_config(fake_cifar, again, "solver.max_steps", "3"))
    assert losses(again) == losses(out) and len(losses(out)) == 3
    other = tmp_path / "other"
    train(tiny_config(fake_cifar, other, "solver.max_steps", "3", "seed", "1"))
    assert losses(other) != losses(out)


def test_step_sets_drop_path_progress_and_trains_aux_head(fake_cifar, tmp_path):
    cfg = tiny_config(fake_cifar, tmp_path, "solver.max_steps", "10")
    trainer = Trainer(cfg, prepare(cfg), resume=False)
    images, labels = next(trainer._batches())
    trainer.train_step(7, images, labels)
    progress = {m.progress for m in trainer.model.modules() if isinstance(m, ScheduledDropPath)}
    assert progress == {0.7}
    assert trainer.model.aux_head.fc.weight.grad.abs().sum() > 0
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cfg.solver.lr * lr_factor(
        1, total_steps=10, steps_per_epoch=trainer.per_epoch, solver=cfg.solver))


def test_a_nan_loss_stops_the_run_with_advice(fake_cifar, tmp_path):
    cfg = tiny_config(fake_cifar, tmp_path, "solver.max_steps", "10")
    trainer = Trainer(cfg, prepare(cfg), resume=False)
    images, labels = next(trainer._batches())
    trainer.criterion = lambda logits, target: logits.sum() * float("nan")
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(FloatingPointError, match="loss is nan at step 3: lower solver.lr"):
        trainer.train_step(3, images, labels)
    assert all(torch.equal(p, w) for p, w in zip(trainer.model.parameters(), weights))


def test_schedules_and_tf_rmsprop():
    cfg = TrainConfig().solver
    assert lr_factor(0, total_steps=100, steps_per_epoch=10, solver=cfg) == 1.0
    assert lr_factor(50, total_steps=100, steps_per_epoch=10, solver=cfg) == pytest.approx(0.5)
    cfg.schedule, cfg.decay_epochs, cfg.decay_rate = "exponential", 2.0, 0.5
    assert [lr_factor(s, total_steps=100, steps_per_epoch=10, solver=cfg) for s in (0, 19, 20, 45)] == \
        [1.0, 1.0, 0.5, 0.25]
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([p], lr=0.1, decay=0.9, momentum=0.9, eps=1.0)
    p.grad = torch.tensor([0.5, 2.0])
    opt.step()
    ms = 0.9 * 1.0 + 0.1 * p.grad ** 2   # TF starts the mean square at 1 and adds epsilon inside the root
    assert torch.allclose(p.detach(), torch.tensor([1.0, -2.0]) - 0.1 * p.grad / torch.sqrt(ms + 1.0))


def test_cifar_augmentation_is_seeded_per_sample(fake_cifar):
    data = build_data(TrainConfig().data.__class__(dir=str(fake_cifar), cutout=16), mean=None, std=None,
                      image_size=32)
    assert torch.equal(data.train[(0, 3)][0], data.train[(0, 3)][0])
    assert not torch.equal(data.train[(0, 3)][0], data.train[(1, 3)][0])
    torch.manual_seed(1)
    image = Cutout(8)(torch.ones(3, 32, 32))
    zeros = int((image == 0).sum()) // 3
    assert 16 <= zeros <= 64 and (image == 0).all(0).sum() == zeros


def test_outputs_manifest_and_loading(trained_run, monkeypatch):
    out, result = trained_run
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert records[-1]["top1"] == result["top1"] and (out / "tensorboard").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["weights"][0]
    assert entry["dataset"] == "cifar-10" and entry["metrics"]["top1"] == round(result["top1"], 3)
    assert entry["metrics"]["measured_by"].endswith("cifar-10 test split")
    model = load_trained(out)
    x = torch.randn(2, 3, 32, 32)
    by_path = create_model("nasnet_a_cifar", pretrained=str(out / "model_final.safetensors"), cells_per_stack=1,
                           num_conv_filters=8, stem_multiplier=1.0, drop_path_keep_prob=0.9).eval()
    monkeypatch.setenv("NASNET_ZOO_MANIFEST", str(out / "manifest.json"))
    monkeypatch.setenv("NASNET_ZOO_HOME", str(out))
    by_name = create_model("nasnet_a_cifar", pretrained=entry["name"], cells_per_stack=1, num_conv_filters=8,
                           stem_multiplier=1.0).eval()
    with torch.no_grad():
        assert torch.equal(model(x), by_path(x)) and torch.equal(model(x), by_name(x))


def test_eval_only_with_weights(fake_cifar, trained_run, tmp_path):
    out, result = trained_run
    cfg = tiny_config(fake_cifar, tmp_path, "model.weights", str(out / "model_final.safetensors"))
    assert evaluate_only(cfg)["top1"] == pytest.approx(result["top1"])
    from_checkpoint = tiny_config(fake_cifar, tmp_path, "model.weights", str(out / "checkpoint.pt"))
    assert evaluate_only(from_checkpoint)["top1"] == pytest.approx(result["top1"])


def test_weights_of_another_architecture_are_refused(fake_cifar, trained_run, tmp_path):
    out, _ = trained_run
    weights = str(out / "model_final.safetensors")
    wider = tiny_config(fake_cifar, tmp_path, "model.num_conv_filters", "12", "model.weights", weights)
    with pytest.raises(ArchitectureMismatchError, match="num_conv_filters: file has 8, this run builds 12"):
        evaluate_only(wider)
    resumed = tiny_config(fake_cifar, out, "model.cells_per_stack", "2")
    with pytest.raises(ArchitectureMismatchError, match="cells_per_stack"):
        train(resumed, resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(fake_cifar, out))


def test_bad_data_folders_fail_before_training(tmp_path):
    (tmp_path / "cifar").mkdir()
    with pytest.raises(CifarLayoutError, match="data_batch_1"):
        train(tiny_config(tmp_path / "cifar", tmp_path / "out"))
    (tmp_path / "images" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(FolderLayoutError, match="no val folder"):
        train(tiny_config(tmp_path / "images", tmp_path / "out", "data.dataset", "folder"))
    (tmp_path / "images" / "val").mkdir()
    with pytest.raises(FolderLayoutError, match="without images"):
        train(tiny_config(tmp_path / "images", tmp_path / "out", "data.dataset", "folder"))
    assert not (tmp_path / "out").exists()


def test_cifar_refuses_another_image_size(fake_cifar, tmp_path):
    with pytest.raises(ValueError, match="CIFAR-10 images are 32x32"):
        train(tiny_config(fake_cifar, tmp_path, "data.image_size", "64"))


def test_invalid_genotype_file_is_reported(fake_cifar, tmp_path):
    bad = NASNET_A.to_dict()
    bad["normal"]["blocks"][0]["ops"][0] = "sep_conv_9x9"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    cfg = tiny_config(fake_cifar, tmp_path / "out", "model.genotype", str(tmp_path / "bad.json"))
    with pytest.raises(GenotypeError, match="sep_conv_9x9"):
        train(cfg)


def test_image_folder_training_with_ema(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / c / f"{i}.jpg")
    result = train(tiny_config(tmp_path, tmp_path / "out", "data.dataset", "folder", "solver.max_steps", "2",
                               "solver.ema_decay", "0.5"))
    assert result["step"] == 2
    ema = torch.load(tmp_path / "out" / "checkpoint.pt")["ema"]
    model = load_trained(tmp_path / "out").eval()
    exported = model.state_dict()
    # the reported top-1 is the exported (EMA) model's, recounted here image by image
    cfg = tiny_config(tmp_path, tmp_path / "unused", "data.dataset", "folder")
    val = build_data(cfg.data, mean=None, std=None, image_size=32).eval
    with torch.no_grad():
        hits = [int(model(val[(0, i)][0][None]).argmax()) == val[(0, i)][1] for i in range(len(val))]
    assert len(hits) == 4 and result["top1"] == pytest.approx(100.0 * sum(hits) / len(hits))
    assert all(torch.equal(exported[k], ema[f"module.{k}"]) for k in exported)  # the EMA weights are exported
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["weights"][0]
    assert entry["num_classes"] == 2 and entry["input"]["input_size"] == [3, 32, 32]
    assert entry["metrics"]["measured_by"].endswith("val split")


def test_retrain_top_ranks_a_journal(fake_cifar, tmp_path):
    other = NASNET_A.to_dict()
    other["normal"]["blocks"][0]["ops"][0] = "max_pool_3x3"
    records = [{"genotype": NASNET_A.to_dict(), "reward": 0.61, "status": "ok"},
               {"genotype": other, "reward": 0.72, "status": "ok"},
               {"genotype": other, "reward": 0.0, "status": "nan"}]
    journal = tmp_path / "search" / "journal.jsonl"
    journal.parent.mkdir()
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [e["reward"] for e in ranked_genotypes(journal.parent)] == [0.72, 0.61]
    rows = retrain_top(journal.parent, 2, recipe="cifar_cpu", data_dir=fake_cifar, max_steps=1,
                       overrides=[*TINY, "solver.batch_size", "8"])
    assert sorted(r["search_rank"] for r in rows) == [1, 2] and [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["top1"] >= rows[1]["top1"] and all(r["params"] > 0 for r in rows)
    assert json.loads((tmp_path / "search" / "retrain" / "ranking.json").read_text()) == rows
    assert "winner: the search's rank-" in format_ranking(rows)
    rebuilt = load_trained(rows[0]["output_dir"])
    assert rebuilt.genotype.to_dict()["normal"] == rows[0]["genotype"]["normal"]


def test_the_trainer_picks_the_cell_the_search_report_ranks_first(tmp_path):
    """One ranking: a genotype scored twice (0.9, 0.1: mean 0.5) stands below one scored 0.6 once, as in
    top_genotypes.json, and ranks count from 1 everywhere (rank 0 is read as 1, with a warning)."""
    from nasnet_zoo.search.report import write_top_genotypes
    from nasnet_zoo.training.genotype_source import genotype_at_rank

    other = NASNET_A.to_dict()
    other["normal"]["blocks"][0]["ops"][0] = "max_pool_3x3"
    records = [{"index": 0, "genotype": NASNET_A.to_dict(), "reward": 0.9, "status": "ok"},
               {"index": 1, "genotype": other, "reward": 0.6, "status": "ok"},
               {"index": 2, "genotype": NASNET_A.to_dict(), "reward": 0.1, "status": "ok"}]
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "journal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    top = write_top_genotypes(folder, records, 10)
    assert [t["reward"] for t in top] == [0.6, 0.5]
    for source in (folder, folder / "journal.jsonl", folder / "top_genotypes.json"):
        first = genotype_at_rank(source, 1)
        assert first["rank"] == 1 and first["reward"] == 0.6
        assert first["genotype"].to_dict()["normal"] == other["normal"]
        assert genotype_at_rank(source, 2)["reward"] == pytest.approx(0.5)
    with pytest.warns(FutureWarning, match="count from 1"):
        assert genotype_at_rank(folder, 0)["reward"] == 0.6
    with pytest.raises(ValueError, match="ranks 2 distinct genotypes"):
        genotype_at_rank(folder, 3)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_training_learns_real_digits(tmp_path):
    """A small twin of the CIFAR-10 figure (docs/training.md): the cifar_cpu recipe's model and optimiser, 60 steps
    on 640 real digit scans; held-out top-1 was 87.5% when measured (chance is 10%)."""
    data = write_digits_as_cifar(tmp_path / "digits")
    result = train(tiny_config(data, tmp_path / "out", "solver.epochs", "3", "solver.batch_size", "32",
                               "solver.lr", "0.1", "data.pad", "0", "log_period", "5"))
    curve = losses(tmp_path / "out")
    assert result["step"] == 60 and len(curve) == 12
    assert np.mean(curve[-3:]) < 0.5 * curve[0], curve  # measured: 3.28 -> 0.45
    assert result["top1"] > 50.0, result  # 200 held-out scans; chance is 10%


def test_real_cifar_subset_pipeline(cifar_dir):
    data = build_data(TrainConfig().data.__class__(dir=str(cifar_dir)), mean=None, std=None, image_size=32)
    assert (len(data.train), len(data.eval), data.num_classes) == (10000, 2000, 10)
    image, label = data.train[(0, 0)]
    assert image.shape == (3, 32, 32) and 0 <= label < 10


def test_cli_reports_config_mistakes(tmp_path, capsys):
    import runpy
    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "train_cls.py"))["main"]
    assert main(["--output-dir", str(tmp_path), "solver.lrr", "0.1"]) == 2
    assert "did you mean solver.lr" in capsys.readouterr().err
    assert main(["--output-dir", str(tmp_path), "solver.lr", "0.1", "--epochs", "1"]) == 2
    assert "put every --flag before them" in capsys.readouterr().err
    assert main(["--recipe", "cifar_gpu", "--output-dir", str(tmp_path)]) == 2
    assert "unknown recipe 'cifar_gpu'" in capsys.readouterr().err


def test_pretrained_start_swaps_the_head_for_the_data_set(trained_run):
    from nasnet_zoo.training.config import ModelSettings
    from nasnet_zoo.training.model import build_model
    out, _ = trained_run
    settings = ModelSettings(pretrained=str(out / "model_final.safetensors"), cells_per_stack=1, num_conv_filters=8,
                             stem_multiplier=1.0)
    model, origin = build_model(settings, num_classes=3)
    saved = load_trained(out).state_dict()
    assert model.classifier.out_features == 3 and origin == {"model": "nasnet_a_cifar"}
    assert torch.equal(model.state_dict()["stem.conv.weight"], saved["stem.conv.weight"])


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    import random
    from nasnet_zoo.utils.checkpoint import rng_state, set_rng_state
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected
