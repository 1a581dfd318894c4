"""``nasnet-zoo info NAME``: what a model is before anyone downloads or trains it.

Its config, parameters and mult-adds (beside the paper's figures where there are some), the feature levels a
detector can use, and the pretrained weights the manifest knows for it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, Sequence

import torch

from .. import hub
from ..factory import create_model
from ..profile import PAPER_COSTS, model_cost
from .common import usage_error


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nasnet-zoo info", description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--image-size", type=int, help="count mult-adds at this size instead of the default")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        info = model_info(args.name, args.image_size, args.num_classes)
    except ValueError as err:  # unknown name, bad size: the message says what to do
        return usage_error(str(err))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print_info(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
