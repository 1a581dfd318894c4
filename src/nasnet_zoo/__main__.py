"""Command line: ``nasnet-zoo COMMAND`` (or ``python -m nasnet_zoo COMMAND``).

``list`` names the zoo's models; the other commands are the programs of ``nasnet_zoo.cli`` (``info``,
``train-cls``, ``train-det``, ``search``, ``export-onnx``, ``predict-det``), which ``tools/*.py`` run in a checkout.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .factory import list_models
from .utils.extras import exits_on_missing_extra

#: Commands that are whole programs with their own options: ``nasnet-zoo NAME ARGS`` runs ``MODULE.main(ARGS)``.
PROGRAMS = {
    "info": ("nasnet_zoo.cli.info", "config, params, mult-adds, feature levels and weights of a model"),
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
    args = parser.parse_args(argv)

    for name in list_models(args.pattern, pretrained=args.pretrained):  # the one command left: list
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
