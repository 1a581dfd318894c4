#!/usr/bin/env python
"""Convert a foreign NASNet-A checkpoint into nasnet_zoo's safetensors and print its manifest entry.

    python tools/convert_weights.py nasnet-a_mobile_04_10_2017.tar.gz --arch nasnet_a_mobile \\
        --drop-background --tag tf_in1k --output nasnet_a_mobile.tf_in1k.safetensors
    python tools/convert_weights.py extracted/model.ckpt --output mobile.safetensors     # a checkpoint prefix
    python tools/convert_weights.py vars.npz --source tf --output mobile.safetensors
    python tools/convert_weights.py nasnetalarge-dc4a7b8b.pth --source timm --output large.timm.safetensors

Inputs: a TF checkpoint (the published ``.tar.gz``, a prefix such as ``model.ckpt``, or a folder holding one;
read without TensorFlow, an archive unpacked into a temporary folder), TF-slim variables as ``.npz`` (keys with
or without ``var/``), or a Cadene / timm ``.pth``. The weights are checked against the architecture before
anything is written; the output is written atomically. The printed entry carries the output's sha256: put it
in a JSON manifest named by ``NASNET_ZOO_MANIFEST`` to load the file by name.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nasnet_zoo
from nasnet_zoo import hub
from nasnet_zoo.utils.io import sha256_file
from nasnet_zoo.convert import SOURCES, convert_state_dict
from nasnet_zoo.convert.files import read_weights_file, save_safetensors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="TF checkpoint (.tar.gz archive, prefix or folder), .npz of TF variables, or .pth")
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
    fitted = hub.load_fitted(model, state, origin=str(args.input), model_name=arch)
    save_safetensors(fitted, args.output, {"architecture": arch, "num_classes": str(num_classes), "source": source,
                                           "converted_from": args.input.name})
    return hub.manifest_entry(
        architecture=arch, tag=args.tag, urls=[args.url or args.output.resolve().as_uri()],
        sha256=sha256_file(args.output), source="ours", file_format="safetensors", num_classes=num_classes,
        dataset=args.dataset, metrics={}, license=args.license, input_cfg=model.pretrained_cfg, padding=padding,
        notes=f"converted from {args.input.name} (source {source}) by tools/convert_weights.py")


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
