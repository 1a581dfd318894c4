"""Searching on any image folder (ImageFolder layout): loading, the held-out split, a real proxy search on real
images (scikit-learn's handwritten digits written as PNG and JPEG files), and folders that cannot work."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from nasnet_zoo.data.folder import FolderLayoutError, list_classes, load_folder_images
from nasnet_zoo.search import SearchConfig, SearchRun
from nasnet_zoo.search.child import ChildConfig, ProxyData
from nasnet_zoo.utils.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def write_digit_folder(root: Path, train_per_class: int = 12, val_per_class: int = 4,
                       val_classes: tuple[int, ...] = (0, 1, 2)) -> Path:
    """Digits 0, 1, 2 as 24x20 (non-square) grey PNGs, plus one RGB JPEG per class, in ImageFolder layout."""
    digits = load_digits()
    for digit in range(3):
        images = digits.images[digits.target == digit]
        for split, count, offset in (("train", train_per_class, 0), ("val", val_per_class, train_per_class)):
            if split == "val" and digit not in val_classes:
                continue
            folder = root / split / f"digit{digit}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = (images[offset + i] * (255 / 16)).astype(np.uint8)
                picture = Image.fromarray(pixels, mode="L").resize((20, 24), Image.NEAREST)
                if i == 0:
                    picture.convert("RGB").save(folder / f"{i:03d}.jpg", quality=95)
                else:
                    picture.save(folder / f"{i:03d}.png")
    return root


def test_folder_images_load_resized_with_train_class_indices(tmp_path):
    root = write_digit_folder(tmp_path / "digits", val_classes=(1, 2))
    classes = list_classes(root)
    assert classes == ["digit0", "digit1", "digit2"]
    x, y = load_folder_images(root, "train", classes, image_size=16)
    assert x.dtype == torch.uint8 and x.shape == (36, 3, 16, 16)
    assert torch.bincount(y).tolist() == [12, 12, 12]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])  # grey -> RGB
    assert x.float().std() > 20  # real strokes survived the resize, not a blank image
    vx, vy = load_folder_images(root, "val", classes, image_size=16)
    assert vx.shape == (8, 3, 16, 16) and sorted(set(vy.tolist())) == [1, 2]  # val's subset keeps train's indices


def test_search_data_holds_its_rewards_out_of_train_and_counts_classes(tmp_path):
    root = write_digit_folder(tmp_path / "digits")
    data = ProxyData.load(root, ChildConfig(val_size=9, image_size=16), dataset="folder")
    assert data.num_classes == 3 and data.classes == ("digit0", "digit1", "digit2")
    assert data.train_x.shape == (27, 3, 16, 16) and data.val_x.shape == (9, 3, 16, 16)
    assert torch.bincount(data.val_y).tolist() == [3, 3, 3]  # class-balanced held-out split
    assert data.train_x.min() >= -1 and data.train_x.max() <= 1
    train_rows = {tuple(r) for r in data.train_x.flatten(1).tolist()}
    assert not any(tuple(r) in train_rows for r in data.val_x.flatten(1).tolist())


def test_proxy_search_on_an_image_folder(tmp_path):
    root = write_digit_folder(tmp_path / "digits")
    cfg = SearchConfig(reward="proxy", strategy="random", dataset="folder", data_dir=str(root), backend="inline",
                       children=2, output_dir=str(tmp_path / "run"),
                       child=ChildConfig(val_size=9, image_size=16, num_conv_filters=4, cells=1, batch_size=9))
    SearchRun(cfg, progress=False).run()
    records = read_jsonl(tmp_path / "run" / "journal.jsonl")
    assert [r["status"] for r in records] == ["ok", "ok"]
    for r in records:
        assert r["reward"] in {k / 9 for k in range(10)}  # accuracy on the 9 held-out images


def _cli():
    spec = importlib.util.spec_from_file_location("search_cli", REPO / "tools" / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loose_images(root: Path) -> Path:
    """train/ and val/ holding images directly, without class sub-folders."""
    write_digit_folder(root / "src")
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for i, image in enumerate(sorted((root / "src" / split).rglob("*.png"))[:3]):
            image.rename(root / split / f"{i}.png")
    return root


@pytest.mark.parametrize("make, message", [
    (lambda root: _loose_images(root), "train has no class sub-folders (it holds 3 images directly: move each "
                                       "into a folder named by its class)"),
    (lambda root: (root / "train").mkdir(parents=True) or (root / "val").mkdir() or root,
     "train has no class sub-folders; expected"),
    (lambda root: write_digit_folder(root) and (root / "train" / "digit9").mkdir() or root,
     "class folders without images (digit9)"),
    (lambda root: (root / "train" / "a").mkdir(parents=True) or root, "has no val folder"),
    (lambda root: root / "missing", "does not exist"),
])
def test_folders_that_cannot_work_fail_before_any_work(tmp_path, capsys, make, message):
    root, out = make(tmp_path / "data"), tmp_path / "out"
    assert _cli().main(["--no-progress", "--reward", "proxy", "--dataset", "folder", "--data-dir", str(root),
                        "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_data_dir_and_unknown_dataset(tmp_path, capsys):
    cli, out = _cli(), str(tmp_path / "out")
    assert cli.main(["--no-progress", "--reward", "proxy", "--dataset", "folder", "--output-dir", out]) == 2
    assert "give --data-dir PATH with train/<class>/*.jpg and val/<class>/*.jpg" in capsys.readouterr().err
    assert cli.main(["--no-progress", "--reward", "proxy", "--dataset", "imagenet", "--data-dir", out,
                     "--output-dir", out]) == 2
    assert "unknown dataset 'imagenet'; expected one of cifar10, folder" in capsys.readouterr().err
    assert cli.main(["--no-progress", "--reward", "oracle", "--dataset", "imagenet", "--output-dir", out]) == 2
    assert "unknown dataset 'imagenet'; expected one of cifar10, folder" in capsys.readouterr().err


def test_an_unreadable_image_is_named(tmp_path):
    root = write_digit_folder(tmp_path / "digits")
    (root / "train" / "digit1" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FolderLayoutError, match="broken.png cannot be read as an image"):
        load_folder_images(root, "train", list_classes(root), image_size=16)


def test_shared_weight_search_on_an_image_folder(tmp_path):
    from nasnet_zoo.search.runner import run_search

    root = write_digit_folder(tmp_path / "digits")
    cfg = SearchConfig(reward="shared", strategy="ppo", dataset="folder", data_dir=str(root), children=10,
                       output_dir=str(tmp_path / "run"),
                       child=ChildConfig(val_size=9, image_size=16, num_conv_filters=4, cells=1, batch_size=9))
    cfg.ppo.minibatch, cfg.shared.train_steps, cfg.shared.controller_updates = 5, 3, 1
    run_search(cfg, progress=False)
    records = read_jsonl(tmp_path / "run" / "journal.jsonl")
    assert len(records) == 10 and {r["status"] for r in records} == {"ok"}
    assert all(0 <= r["reward"] <= 1 for r in records)
