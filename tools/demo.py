"""``make demo``: the package's main job end to end on this machine, from models by name to an ONNX detector.

1. ``zoo_tour``: build every registered model by name and print its size and mult-adds beside the paper's;
   run a real photo through the NASNet-A Mobile backbone (``features_only``, optimised for inference) and show
   its feature maps per stride; draw the NASNet-A cells.
2. Detection: ``tools/train_det.py`` with no data arguments trains a NASNet-A FPN Faster R-CNN on the embedded
   COCO-format digits dataset, evaluates it with COCOeval and draws predictions beside the ground truth.
3. Deployment: ``tools/export_onnx.py`` exports that detector, runs it in onnxruntime on the demo's val images
   and built-in cases, and prints parity and speed against PyTorch.

The console shows the steps, the figures and where the files went; the export's full parity table and log go
to ``det/export_onnx.log``. ``--verbose`` streams everything (the programs' ``--verbose`` included).

    python tools/demo.py --output-dir runs/demo          # about 7 minutes on 2 quiet CPU cores
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import nasnet_zoo
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.profile import PAPER_COSTS, model_cost
from nasnet_zoo.utils.extras import exits_on_missing_extra, require
from nasnet_zoo.utils.io import atomic_path, atomic_write_json
from nasnet_zoo.visualize import draw_genotype

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "nasnet_a_mobile"
#: What the demo imports, all in the ``demo`` extra (``make demo`` installs ``dev``, which holds it).
DEMO_MODULES = ("sklearn", "matplotlib", "pycocotools", "onnx", "onnxruntime")


def require_demo_extra() -> None:
    """Stop before any work, with one line, when a package of the ``demo`` extra is missing."""
    for module in DEMO_MODULES:
        require(module, extra="demo", feature="The demo")


def find_photo() -> tuple[Image.Image, str]:
    """A COCO val photo from the test data when present, else scikit-learn's bundled sample photo."""
    roots = [os.environ.get("NASNET_ZOO_TEST_DATA"), REPO.parent / "shared" / "data"]
    for root in filter(None, roots):
        photos = sorted((Path(root) / "coco-tiny" / "val2017").glob("*.jpg"))
        if photos:
            return Image.open(photos[0]).convert("RGB"), f"COCO val2017 {photos[0].name} ({photos[0]})"
    from sklearn.datasets import load_sample_image
    return (Image.fromarray(load_sample_image("china.jpg")),
            "scikit-learn's bundled sample photo china.jpg (no COCO test data found)")


def to_input(photo: Image.Image, cfg: dict[str, Any], height: int) -> torch.Tensor:
    """Resize to ``height`` keeping the aspect ratio (width a multiple of 32), normalise with the model's config."""
    width = max(32, round(photo.width * height / photo.height / 32) * 32)
    array = np.asarray(photo.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    x = torch.from_numpy(array).permute(2, 0, 1)
    mean, std = torch.tensor(cfg["mean"]).view(3, 1, 1), torch.tensor(cfg["std"]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def backbone_with_weights(verbose: bool) -> tuple[torch.nn.Module, str]:
    """The Mobile backbone with its default pretrained weights when they are cached or downloadable, else random
    ones (the demo says which in one line; ``verbose`` also shows each mirror that failed)."""
    downloads = logging.getLogger("nasnet_zoo.hub.download")
    level = downloads.level
    if not verbose:
        downloads.setLevel(logging.ERROR)
    try:
        return nasnet_zoo.create_model(BACKBONE, features_only=True, pretrained=True), "pretrained"
    except (OSError, RuntimeError, ValueError) as err:
        first_line = str(err).splitlines()[0]
        print(f"  no pretrained weights here ({first_line[:90]}...): random weights")
        return nasnet_zoo.create_model(BACKBONE, features_only=True), "random (untrained)"
    finally:
        downloads.setLevel(level)


def print_model_table() -> list[dict[str, Any]]:
    rows = []
    print(f"  {'model':<16} {'N @ F':<9} {'input':<8} {'params':>12} {'mult-adds':>16}   paper")
    for name in nasnet_zoo.list_models():
        with torch.device("meta"):  # shapes only: parameters and mult-adds need no memory or arithmetic
            model = nasnet_zoo.create_model(name)
        cost = model_cost(model)
        paper = PAPER_COSTS.get(name)
        paper_text = "" if paper is None else f"{paper[0] / 1e6:.1f}M" + (
            "" if paper[1] is None else f" / {paper[1] / 1e6:,.0f}M")
        size = f"{cost.input_size[1]}x{cost.input_size[2]}"
        print(f"  {name:<16} {model.pretrained_cfg.get('notation', ''):<9} {size:<8} {cost.params:>12,} "
              f"{cost.mult_adds:>16,}   {paper_text}")
        rows.append({"name": name, **cost.as_dict()})
    return rows


def save_feature_grid(photo: Image.Image, x: torch.Tensor, maps: list[torch.Tensor], info: list[dict[str, Any]],
                      path: Path, caption: str) -> None:
    """The photo and, per level, the mean activation over channels (each panel at its own resolution)."""
    fig = require("matplotlib.figure", extra="demo", feature="The demo").Figure(figsize=(3.2 * (len(maps) + 1), 3.4))
    axes = fig.subplots(1, len(maps) + 1)
    axes[0].imshow(photo.resize((x.shape[-1], x.shape[-2])))
    axes[0].set_title(f"input {x.shape[-2]}x{x.shape[-1]}", fontsize=9)
    for ax, fmap, level in zip(axes[1:], maps, info):
        ax.imshow(fmap[0].mean(0).float().numpy(), cmap="viridis")
        ax.set_title(f"stride {level['reduction']}: {level['num_chs']} ch, "
                     f"{fmap.shape[-2]}x{fmap.shape[-1]}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(caption, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


@torch.no_grad()
def zoo_tour(out_dir: Path, verbose: bool = False) -> dict[str, Any]:
    """Step 1 of the demo: models by name with their costs, a photo's feature maps, the NASNet-A cells."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print("== 1. The NASNet-A zoo: models by name, parameters (no aux head) and mult-adds at their default size")
    models = print_model_table()

    print(f"\n== 2. A real photo through the {BACKBONE} backbone (features_only, optimize_for_inference)")
    photo, photo_source = find_photo()
    print(f"  photo: {photo_source}")
    backbone, weights = backbone_with_weights(verbose)
    x = to_input(photo, backbone.pretrained_cfg, height=224)
    maps = optimize_for_inference(backbone)(x)
    for level, fmap in zip(backbone.feature_info, maps):
        print(f"  stride {level['reduction']:>2}  {level['module']:<20} {tuple(fmap.shape)}")
    grid = out_dir / "feature_maps.png"
    save_feature_grid(photo, x, maps, list(backbone.feature_info), grid,
                      f"{BACKBONE} backbone, {weights} weights: mean activation per level")
    print(f"  wrote {grid}")

    print("\n== 3. The NASNet-A cells (the genotype every model above is built from)")
    cells = out_dir / "nasnet_a_cells.png"
    draw_genotype(nasnet_zoo.NASNET_A, cells)
    print(f"  wrote {cells}")

    summary = {"models": models, "photo": photo_source, "backbone": BACKBONE, "weights": weights,
               "feature_maps": [{"stride": lvl["reduction"], "channels": lvl["num_chs"], "shape": list(m.shape)}
                                for lvl, m in zip(backbone.feature_info, maps)],
               "files": [str(grid), str(cells)]}
    atomic_write_json(out_dir / "zoo_tour.json", summary)
    return summary


def run_tool(script: str, *args: str, log: Path | None = None, shown: str = "") -> None:
    """Run one of our CLIs as a user would: its output streams through, or goes to ``log`` (then its last lines
    are shown if it fails). ``shown`` replaces the arguments in the echoed command (long file lists)."""
    command = [sys.executable, str(REPO / "tools" / script), *args]
    print(f"  $ tools/{script} {shown or ' '.join(args)}", flush=True)
    if log is None:
        subprocess.run(command, check=True)
        return
    print(f"  (its output goes to {log}; about half a minute)", flush=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        print("".join(log.read_text(encoding="utf-8").splitlines(keepends=True)[-20:]), end="", file=sys.stderr)
        raise subprocess.CalledProcessError(proc.returncode, command)


def detection(out_dir: Path, verbose: bool = False) -> Path:
    """Step 2: train and evaluate the demo detector on the embedded digits dataset."""
    print("\n== 4. Faster R-CNN with a NASNet-A FPN backbone on the embedded COCO-format digits dataset")
    run_tool("train_det.py", "--output-dir", str(out_dir), *(["--verbose"] if verbose else []))
    return out_dir / "model_final.pth"


def parity_summary(report: dict[str, Any]) -> str:
    """The export's parity and speed in three lines (the full table is in the log)."""
    cases = report["parity"]["cases"]
    given = [c for c in cases if c["name"].startswith("image ")]
    dets = [c["torch dets"] for c in given]
    box, score = max(c["max box diff"] for c in cases), max(c["max score diff"] for c in cases)
    speed = report["speed"]
    verdict = "PASS" if report["parity"]["ok"] else "FAIL"
    return (f"  parity {verdict}: {len(cases)} cases ({len(given)} val images with {min(dets)}-{max(dets)} "
            f"detections, {len(cases) - len(given)} built-in: other sizes, a blank image)\n"
            f"  max box difference {box:.2g} px, max score difference {score:.2g}\n"
            f"  speed per image: PyTorch eager {speed['pytorch_eager_ms']:.1f} ms, onnxruntime "
            f"{speed['onnxruntime_ms']:.1f} ms ({speed['speedup']:.2f}x), {speed['torch_threads']} thread")


def deployment(det_dir: Path, checkpoint: Path, verbose: bool = False) -> None:
    """Step 3: export the trained detector to ONNX and check it against PyTorch in onnxruntime."""
    import yaml

    print("\n== 5. ONNX export of the trained detector, parity and speed in onnxruntime")
    cfg = yaml.safe_load((det_dir / "config.yaml").read_text(encoding="utf-8"))
    images = sorted(Path(cfg["data"]["val_images"]).glob("*.png"))[:20]
    report, log = det_dir / "onnx_report.json", det_dir / "export_onnx.log"
    fixed = ["--detector", cfg["model"]["name"], "--checkpoint", str(checkpoint),
             "--output", str(det_dir / "model.onnx")]
    tail = ["--benchmark", "3", "--threads", "1", "--report", str(report)]
    shown = " ".join(fixed + ["--verify", f"{images[0].parent}/*.png (the first {len(images)})"] + tail)
    if verbose:
        run_tool("export_onnx.py", *fixed, "--verify", *map(str, images), *tail, "--verbose", shown=shown)
        return
    run_tool("export_onnx.py", *fixed, "--verify", *map(str, images), *tail, log=log, shown=shown)
    print(parity_summary(json.loads(report.read_text(encoding="utf-8"))))
    print(f"  wrote {det_dir / 'model.onnx'}")


@exits_on_missing_extra
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="runs/demo", type=Path)
    parser.add_argument("--zoo-only", action="store_true", help="stop after the zoo tour")
    parser.add_argument("--verbose", action="store_true",
                        help="stream everything: the export's warnings and full parity table, debug logs")
    args = parser.parse_args(argv)
    require_demo_extra()
    print(f"nasnet-zoo {nasnet_zoo.__version__} demo; output in {args.output_dir}/\n")
    zoo_tour(args.output_dir / "zoo", args.verbose)
    if args.zoo_only:
        return 0
    det_dir = args.output_dir / "det"
    try:
        deployment(det_dir, detection(det_dir, args.verbose), args.verbose)
    except subprocess.CalledProcessError as err:
        print(f"demo step failed: {' '.join(map(str, err.cmd[1:3]))} exited with {err.returncode}", file=sys.stderr)
        return 1
    metrics = json.loads((det_dir / "coco_eval.json").read_text(encoding="utf-8"))
    print(f"\ndemo finished: detector AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f} on the digits val split. "
          f"Everything is under {args.output_dir}/:\n"
          f"  zoo/  feature_maps.png (a photo's feature maps per stride), nasnet_a_cells.png, zoo_tour.json\n"
          f"  det/  vis/*.png (predictions beside ground truth), coco_eval.json, metrics.jsonl, model_final.pth\n"
          f"  det/  model.onnx, onnx_report.json (parity and speed)"
          + (", export_onnx.log" if (det_dir / "export_onnx.log").is_file() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
