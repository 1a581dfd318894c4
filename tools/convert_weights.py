#!/usr/bin/env python
"""Convert a foreign NASNet-A checkpoint into nasnet_zoo's safetensors and print its manifest entry.

    python tools/convert_weights.py nasnet-a_mobile_04_10_2017.tar.gz --source tf --arch nasnet_a_mobile \\
        --drop-background --output nasnet_a_mobile.tfslim_in1k.safetensors
    python tools/convert_weights.py vars.npz --source tf --output mobile.safetensors     # no TensorFlow needed
    python tools/convert_weights.py nasnetalarge-dc4a7b8b.pth --source timm --output large.timm.safetensors

Inputs: TF-slim variables as ``.npz`` (keys with or without ``var/``), a TF checkpoint (prefix, folder or the
published ``.tar.gz``; needs TensorFlow, extra ``tf``), or a Cadene / timm ``.pth``. The weights are checked
against the architecture before anything is written; the output is written atomically. Put the printed entry
in a JSON manifest named by ``NASNET_ZOO_MANIFEST`` to load the file by name.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nasnet_zoo
from nasnet_zoo import hub
from nasnet_zoo.convert import SOURCES, convert_state_dict
from nasnet_zoo.convert.files import read_weights_file, save_safetensors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help=".npz of TF variables, TF checkpoint / .tar.gz archive, or .pth")
    parser.add_argument("--source", choices=SOURCES, help="layout of the input (guessed when omitted)")
    parser.add_argument("--arch", help="architecture, e.g. nasnet_a_mobile (guessed from the weights when omitted)")
    background = parser.add_mutually_exclusive_group()
    background.add_argument("--drop-background", action="store_true",
                            help="drop class 0 (TF's background) of a 1001-class head: 1000 ImageNet classes")
    background.add_argument("--keep-background", dest="drop_background", action="store_false",
                            help="keep a 1001-class head as it is (default)")
    parser.add_argument("--output", type=Path, required=True, help="where to write our .safetensors")
    parser.add_argument("--tag", default="converted", help="manifest tag: the entry is named <arch>.<tag>")
    parser.add_argument("--url", help="where the file will be published (default: its file:// URL)")
    parser.add_argument("--dataset", default="imagenet-1k")
    parser.add_argument("--license", default="as the source checkpoint")
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> dict:
    """Convert, verify against the architecture, write; return the manifest entry."""
    raw, source, _ = read_weights_file(args.input, args.source)
    if source == "ours":
        raise SystemExit(f"{args.input} is already in nasnet_zoo's layout; nothing to convert")
    state = convert_state_dict(raw, source=source)
    arch = args.arch or hub.guess_architecture(state)
    if arch is None:
        raise SystemExit("cannot tell the architecture from the weights: pass --arch (see nasnet_zoo.list_models())")
    classes = int(state["classifier.weight"].shape[0])
    if args.drop_background and classes != 1001:
        raise SystemExit(f"--drop-background needs a 1001-class head; this checkpoint has {classes} classes")
    num_classes = 1000 if args.drop_background else classes
    padding = "timm" if source == "timm" else "tf"
    model = nasnet_zoo.create_model(arch, num_classes=num_classes, padding=padding)
    hub.check_fits(model, state, origin=str(args.input), model_name=arch)
    state = hub.fit_heads(state, model, origin=str(args.input))
    model.load_state_dict(state, strict=False)  # proves every tensor has the model's shape
    save_safetensors(state, args.output, {"architecture": arch, "num_classes": str(num_classes), "source": source,
                                          "converted_from": args.input.name})
    cfg = model.pretrained_cfg
    return {
        "name": f"{arch}.{args.tag}", "architecture": arch, "default": False,
        "url": args.url or args.output.resolve().as_uri(), "sha256": hub.sha256_file(args.output),
        "source": "ours", "file_format": "safetensors", "num_classes": num_classes, "dataset": args.dataset,
        "metrics": {}, "license": args.license,
        "input": {k: list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k]
                  for k in ("input_size", "mean", "std", "crop_pct", "interpolation")},
        "padding": padding,
        "notes": f"converted from {args.input.name} (source {source}) by tools/convert_weights.py",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        entry = convert(args)
    except (ImportError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
