"""Command line: ``nasnet-zoo COMMAND`` (or ``python -m nasnet_zoo COMMAND``).

``list`` and ``info NAME`` describe the zoo; the other commands are the programs of ``nasnet_zoo.cli``
(``train-cls``, ``train-det``, ``search``, ``export-onnx``, ...), which ``tools/*.py`` run in a checkout.

``info`` shows what a model is before anyone downloads or trains it: its config, parameters and mult-adds
(beside the paper's figures where there are some), the feature levels a detector can use, and the
pretrained weights the manifest knows for it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict
from typing import Any, Sequence

import torch

from . import hub
from .profile import PAPER_COSTS, model_cost
from .factory import create_model, list_models
from .utils.extras import exits_on_missing_extra


def _human(value: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))


def _versus_paper(ours: int, paper: float | None) -> str:
    if paper is None:
        return ""
    return f"  (paper {_human(paper)}, {100 * (ours - paper) / paper:+.2f}%)"


def model_info(name: str, image_size: int | None = None, num_classes: int | None = None) -> dict[str, Any]:
    """Everything ``info`` prints, as a JSON-ready dict."""
    overrides: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if image_size is not None:
        overrides["image_size"] = image_size
    with torch.device("meta"):  # shapes only: no memory, no initialisation, no arithmetic (Large: instant)
        model = create_model(name, **overrides)
    cost = model_cost(model)
    weights = []
    for weight_name in hub.weights_for_model(name):
        w = hub.get_weights(weight_name)
        weights.append({"name": w.name, "default": w.default, "dataset": w.dataset, "source": w.source,
                        "num_classes": w.num_classes, "metrics": w.metrics, "url": w.url})
    paper = PAPER_COSTS.get(name)
    default_size = image_size is None and num_classes is None
    return {
        "name": name,
        "config": {"genotype": model.genotype.name or "custom",
                   **asdict(model.config)},
        "pretrained_cfg": model.pretrained_cfg,
        **cost.as_dict(),
        "paper": {"params": paper[0], "mult_adds": paper[1]} if paper and default_size else None,
        "feature_levels": [{"channels": lvl["num_chs"], "stride": lvl["reduction"], "module": lvl["module"]}
                           for lvl in model.feature_levels()],
        "pretrained_weights": weights,
    }


def print_info(info: dict[str, Any]) -> None:
    paper = info["paper"] or {}
    print(f"{info['name']}  ({info['pretrained_cfg'].get('notation', '')}, "
          f"trained on {info['pretrained_cfg'].get('dataset', '?')})")
    print("config:")
    for key, value in info["config"].items():
        print(f"  {key}: {value}")
    print(f"params (without aux head): {info['params']:,}{_versus_paper(info['params'], paper.get('params'))}")
    size = "x".join(str(s) for s in info["input_size"][1:])
    print(f"mult-adds at {size}: {info['mult_adds']:,}{_versus_paper(info['mult_adds'], paper.get('mult_adds'))}")
    print("feature levels (features_only=True):")
    for i, level in enumerate(info["feature_levels"]):
        print(f"  [{i}] stride {level['stride']:>2}: {level['channels']:>4} channels  ({level['module']})")
    print("pretrained weights:" if info["pretrained_weights"] else "pretrained weights: none in the manifest")
    for w in info["pretrained_weights"]:
        top1 = w["metrics"].get("top1")
        print(f"  {w['name']}{' (default)' if w['default'] else ''}: {w['dataset']}, {w['num_classes']} classes"
              f"{f', top-1 {top1}' if top1 is not None else ''}, from {w['source']} ({w['url']})")


#: Commands that are whole programs with their own options: ``nasnet-zoo NAME ARGS`` runs ``MODULE.main(ARGS)``.
PROGRAMS = {
    "train-cls": ("nasnet_zoo.cli.train_cls", "train or evaluate a classifier (tools/train_cls.py)"),
    "train-det": ("nasnet_zoo.cli.train_det", "train or evaluate a detector (tools/train_det.py)"),
    "search": ("nasnet_zoo.cli.search", "search NASNet cells (tools/search.py)"),
    "export-onnx": ("nasnet_zoo.cli.export_onnx", "export to ONNX and check it against PyTorch (tools/export_onnx.py)"),
    "predict-det": ("nasnet_zoo.cli.predict_det", "run a trained detector on photos (tools/predict_det.py)"),
}


@exits_on_missing_extra  # a program whose extra is missing: one line naming it, exit 2, no traceback
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PROGRAMS:
        return importlib.import_module(PROGRAMS[argv[0]][0]).main(argv[1:])
    parser = argparse.ArgumentParser(prog="nasnet-zoo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, summary) in PROGRAMS.items():  # listed in --help; run above, before this parser
        commands.add_parser(name, help=f"{summary}; `nasnet-zoo {name} --help` for its options")
    list_cmd = commands.add_parser("list", help="registered model names")
    list_cmd.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'nasnet_a_*'")
    list_cmd.add_argument("--pretrained", action="store_true", help="only models with weights in the manifest")
    info_cmd = commands.add_parser("info", help="config, params, mult-adds, feature levels and weights of a model")
    info_cmd.add_argument("name")
    info_cmd.add_argument("--image-size", type=int, help="count mult-adds at this size instead of the default")
    info_cmd.add_argument("--num-classes", type=int)
    info_cmd.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in list_models(args.pattern, pretrained=args.pretrained):
            print(name)
        return 0
    try:
        info = model_info(args.name, args.image_size, args.num_classes)
    except ValueError as err:  # unknown name, bad size: the message says what to do
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print_info(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
