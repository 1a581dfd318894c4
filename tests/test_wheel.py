"""The package works from a wheel, away from the checkout: build it, install it into a fresh virtual environment,
and run the command line from a folder outside the checkout.

The fresh environment gets the heavy dependencies (torch, torchvision, onnx, ...) by a ``.pth`` line naming this
environment's site-packages, so nothing is downloaded or copied. A ``.pth`` line only adds a folder to
``sys.path``; the ``.pth`` files inside it (among them the editable install's, which points at ``src/``) are not
read, so the checkout stays invisible and ``nasnet_zoo`` can only come from the wheel.

The base install (``pip install nasnet-zoo``, no extra) gets a folder of links to exactly the distributions the
base requirements pull in, resolved from pyproject.toml through this environment's metadata (torch's own
dependencies included): no extra's package is importable there, and ``pip check`` proves the base complete.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "nasnet_zoo"

pytestmark = pytest.mark.slow


class Installed:
    """A fresh virtual environment with ``wheel`` installed, and a way to run its Python outside the checkout."""

    def __init__(self, root: Path, wheel: Path, dependencies: list[str] | None = None) -> None:
        """``dependencies``: the site-packages folders to link in (default: every one of this environment)."""
        self.root = root
        self.venv = root / "venv"
        self.python = self.venv / "bin" / "python"
        self.workdir = root / "work"  # the cwd of every command: not the checkout
        self.workdir.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
        self.env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", OMP_NUM_THREADS="1",
                        NASNET_ZOO_HOME=str(root / "home"))
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        # The venv's own pip, before the dependencies are linked in: it sees an empty environment.
        self.run(self.python, "-m", "pip", "install", "-q", "--no-deps", wheel)
        paths = self.python_json("import json, sysconfig; print(json.dumps(sysconfig.get_paths()))")
        self.site = Path(paths["purelib"])
        ours = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
        assert sysconfig.get_paths()["purelib"] in ours
        (self.site / "_test_wheel_dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies or ours))

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(a) for a in args], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\n"
                                 f"stderr: {proc.stderr[-3000:]}")
        return proc

    def python_json(self, code: str) -> dict:
        """Run ``code`` in the installed environment; it prints one JSON object as its last line."""
        return json.loads(self.run(self.python, "-c", code).stdout.strip().splitlines()[-1])


def build_wheel(out: Path) -> Path:
    """``pip wheel`` on a copy of what the build reads, so that the build writes nothing into the checkout."""
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheels = sorted((out / "dist").glob("nasnet_zoo-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    return Installed(root, build_wheel(root))


def test_the_package_comes_from_the_wheel_with_its_data(installed: Installed) -> None:
    found = installed.python_json(
        "import json, nasnet_zoo, nasnet_zoo.configs as c, nasnet_zoo.pretrained as p; from pathlib import Path; "
        "root = Path(nasnet_zoo.__file__).parent; "
        "print(json.dumps({'package': str(root), 'version': nasnet_zoo.__version__, "
        "'recipe': str(c.config_path('cls', 'cifar_cpu')), "
        "'configs': sorted(str(f.relative_to(c.CONFIG_ROOT)) for f in c.CONFIG_ROOT.rglob('*.yaml')), "
        "'manifest': json.loads((Path(p.__file__).parent / 'manifest.json').read_text())}))")
    package = Path(found["package"])
    assert package == installed.site / "nasnet_zoo"
    assert REPO not in package.parents and REPO / "src" not in package.parents
    assert Path(found["recipe"]).is_relative_to(package)
    shipped = sorted(str(f.relative_to(PACKAGE / "configs")) for f in (PACKAGE / "configs").rglob("*.yaml"))
    assert found["configs"] == shipped and "detectron2/faster_rcnn_nasnet_digits_demo.yaml" in shipped
    assert found["manifest"] == json.loads((PACKAGE / "pretrained" / "manifest.json").read_text())


def test_info_and_list_commands(installed: Installed) -> None:
    out = installed.run(installed.python, "-m", "nasnet_zoo", "info", "nasnet_a_mobile").stdout
    assert "nasnet_a_mobile" in out and "params" in out and "mult-adds" in out
    listed = installed.run(installed.venv / "bin" / "nasnet-zoo", "list", "nasnet_a_*").stdout.split()
    assert {"nasnet_a_mobile", "nasnet_a_large", "nasnet_a_cifar"} <= set(listed)


def test_training_entry_point_runs_a_shipped_recipe(installed: Installed) -> None:
    """``--recipe cifar_cpu`` resolves inside the installed package; the data is a tiny ImageFolder."""
    data = installed.root / "tiny"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for name in ("cat", "dog"):
            (data / split / name).mkdir(parents=True)
            for i in range(count):
                image = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
                image.save(data / split / name / f"{i}.png")
    out = installed.root / "run"
    proc = installed.run(installed.python, "-m", "nasnet_zoo", "train-cls", "--recipe", "cifar_cpu", "--dataset",
                         "folder", "--data-dir", data, "--image-size", "32", "--max-steps", "2", "--batch-size", "4",
                         "--device", "cpu", "--output-dir", out)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 2 and result["model"] == "nasnet_a_cifar"
    assert (out / "model_final.safetensors").is_file() and (out / "config.yaml").is_file()
    assert "cells_per_stack: 1" in (out / "config.yaml").read_text()  # the recipe's settings were applied


def test_detectron2_config_lookup_and_its_error_path(installed: Installed) -> None:
    found = installed.python_json(
        "import json, importlib.util; from nasnet_zoo.configs import config_path; "
        "demo = config_path('detectron2', 'faster_rcnn_nasnet_a_mobile_fpn_demo_cpu')\n"
        "try:\n    config_path('detectron2', 'faster_rcnn_nasnet_z')\n    error = ''\n"
        "except FileNotFoundError as err:\n    error = str(err)\n"
        "print(json.dumps({'demo': str(demo), 'error': error, "
        "'detectron2': importlib.util.find_spec('detectron2') is not None}))")
    assert Path(found["demo"]).is_file() and Path(found["demo"]).is_relative_to(installed.site)
    assert "no shipped config detectron2/faster_rcnn_nasnet_z.yaml" in found["error"]
    assert "faster_rcnn_nasnet_a_mobile_fpn_demo_cpu" in found["error"]  # the message lists what exists
    # Where detectron2 is installed, hide it the way a missing package looks to ``import`` (None in sys.modules).
    hide = "import sys; sys.modules['detectron2'] = None; " if found["detectron2"] else ""
    command = hide + "import sys; from nasnet_zoo.__main__ import main; sys.exit(main())"
    proc = installed.run(installed.python, "-c", command, "train-det", "--engine", "detectron2", "--config-file",
                         found["demo"], check=False)
    assert proc.returncode != 0 and "needs detectron2" in proc.stderr and "--no-build-isolation" in proc.stderr


# --- The base install: no extra ------------------------------------------------------------------------------

#: The import names of every extra's packages; none may be importable in the base install.
EXTRA_MODULES = ("matplotlib", "pycocotools", "sklearn", "tensorboard", "onnx", "onnxruntime", "onnxscript", "ray")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_distributions() -> dict[str, importlib.metadata.Distribution]:
    """The distributions ``pip install nasnet-zoo`` brings: pyproject's base requirements and, recursively, theirs
    (requirement extras and markers evaluated), as installed in this environment."""
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    found: dict[str, importlib.metadata.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        dist = importlib.metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), (req, dist.version)
        key = _key(dist.metadata["Name"])
        found[key] = dist
        if (key, frozenset(req.extras)) in done:
            continue
        done.add((key, frozenset(req.extras)))
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ["", *req.extras]):
                todo.append(sub)
    return found


def link_distributions(dists: dict[str, importlib.metadata.Distribution], target: Path) -> None:
    """Link each distribution's files into ``target``: a top-level entry as a whole where only these
    distributions own it, else (a shared namespace folder) its entries one level down."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            if file.parts[0] not in ("..", "__pycache__"):
                for depth in (1, 2):
                    owners.setdefault(tuple(file.parts[:depth]), set()).add(_key(dist.metadata["Name"]))
    ours = set(dists)
    for key, dist in dists.items():
        site = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            if file.parts[0] in ("..", "__pycache__"):
                continue
            parts = file.parts[:1] if owners[file.parts[:1]] <= ours or len(file.parts) == 1 else file.parts[:2]
            assert owners[parts] <= ours, f"{'/'.join(parts)} is shared with {owners[parts] - ours}"
            link = target.joinpath(*parts)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(site.joinpath(*parts))


@pytest.fixture(scope="module")
def base_installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("base")
    deps = root / "base-dependencies"
    link_distributions(base_distributions(), deps)
    installed = Installed(root, build_wheel(root), dependencies=[str(deps)])
    # The venv module seeds its own old setuptools, which would shadow the linked one torch requires (pip would
    # upgrade it in a real install): remove it, so every distribution present is one the base install brings.
    installed.run(installed.python, "-m", "pip", "uninstall", "-y", "-q", "setuptools")
    return installed


def test_base_install_has_no_extra_and_runs_the_model_api(base_installed: Installed) -> None:
    check = base_installed.run(base_installed.python, "-m", "pip", "check")  # every requirement of nasnet-zoo met
    assert "No broken requirements" in check.stdout, check.stdout
    found = base_installed.python_json(
        "import importlib.util, json, sys, torch, nasnet_zoo\n"
        f"extras = {EXTRA_MODULES!r}\n"
        "absent = [m for m in extras if importlib.util.find_spec(m) is None]\n"
        "torch.manual_seed(0)\n"
        "m = nasnet_zoo.create_model('nasnet_a_mobile', num_classes=10).eval()\n"
        "x = torch.randn(1, 3, 224, 224)\n"
        "with torch.no_grad():\n"
        "    maps = m.forward_intermediates(x, indices=3, intermediates_only=True)\n"
        "    diff = (nasnet_zoo.optimize_for_inference(m)(x) - m(x)).abs().max().item()\n"
        "print(json.dumps({'absent': absent, 'maps': len(maps), 'diff': diff, 'package': nasnet_zoo.__file__, "
        "'loaded': [n for n in extras if n in sys.modules]}))")
    assert found["absent"] == list(EXTRA_MODULES) and found["loaded"] == []
    assert Path(found["package"]).is_relative_to(base_installed.site)
    assert found["maps"] == 3 and found["diff"] < 1e-4
    out = base_installed.run(base_installed.venv / "bin" / "nasnet-zoo", "info", "nasnet_a_mobile").stdout
    assert "5,289,978" in out


def test_base_install_asked_for_coco_evaluation_names_the_extra_in_one_line(base_installed: Installed) -> None:
    data = base_installed.root / "coco"
    data.mkdir()
    Image.new("RGB", (64, 48), (90, 20, 20)).save(data / "1.png")
    (data / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 30, 20], "iscrowd": 0,
                         "area": 600}]}))
    ann = data / "ann.json"
    proc = base_installed.run(base_installed.venv / "bin" / "nasnet-zoo", "train-det", "--train-images", data,
                              "--train-ann", ann, "--val-images", data, "--val-ann", ann, "--output-dir",
                              base_installed.root / "det", "--device", "cpu", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: COCO evaluation (pycocotools) needs the 'detection' extra "
                                        "(pycocotools is not installed): pip install 'nasnet-zoo[detection]'"]
    # The Python API says the same, and the training data itself loads without pycocotools.
    found = base_installed.python_json(
        "import json\nfrom nasnet_zoo.detection.data.coco import CocoDetection\n"
        "from nasnet_zoo.detection.evaluation.coco_evaluation import coco_evaluate\n"
        f"d = CocoDetection({str(data)!r}, {str(ann)!r}, train=True)\n"
        "try:\n    coco_evaluate(d, [{'image_id': 1, 'category_id': 1, 'bbox': [8, 8, 30, 20], 'score': 1.0}])\n"
        "except ImportError as err:\n    message = str(err)\n"
        "print(json.dumps({'boxes': d[0][1]['boxes'].tolist(), 'message': message}))")
    assert found["boxes"] == [[8.0, 8.0, 38.0, 28.0]]
    assert found["message"].endswith("pip install 'nasnet-zoo[detection]'") and "\n" not in found["message"]
