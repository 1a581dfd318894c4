"""The package works from a wheel, away from the checkout: build it, install it into a fresh virtual environment,
and run the command line from a folder outside the checkout.

The fresh environment gets the heavy dependencies (torch, torchvision, onnx, ...) by a ``.pth`` line naming this
environment's site-packages, so nothing is downloaded or copied. A ``.pth`` line only adds a folder to
``sys.path``; the ``.pth`` files inside it (among them the editable install's, which points at ``src/``) are not
read, so the checkout stays invisible and ``nasnet_zoo`` can only come from the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "nasnet_zoo"

pytestmark = pytest.mark.slow


class Installed:
    """A fresh virtual environment with ``wheel`` installed, and a way to run its Python outside the checkout."""

    def __init__(self, root: Path, wheel: Path) -> None:
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
        (self.site / "_test_wheel_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))

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
