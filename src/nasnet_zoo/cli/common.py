"""What every program's command line shares (detectron2's ``default_argument_parser`` habit).

One parser factory for the shared flags (``--config-file``, ``--output-dir``, ``--resume``, ``--eval-only`` where
a program evaluates), one mapping from a program's convenience flags to its config keys, trailing ``KEY VALUE``
overrides last, and one way to report a usage or config error: one ``error:`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Mapping

from ..config import ConfigError

#: Exit code of every usage, config or input error (argparse's own).
USAGE_ERROR = 2


def default_argument_parser(prog: str, description: str | None, *, output_help: str = "the run folder",
                            resume_help: str = "continue the run in --output-dir",
                            eval_only: bool = False) -> argparse.ArgumentParser:
    """The parser every ``nasnet-zoo`` program starts from; add the program's own flags, then :func:`add_overrides`."""
    parser = argparse.ArgumentParser(prog=f"nasnet-zoo {prog}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="YAML settings (examples in configs/)")
    parser.add_argument("--output-dir", help=output_help)
    parser.add_argument("--resume", action="store_true", help=resume_help)
    if eval_only:
        parser.add_argument("--eval-only", action="store_true", help="evaluate and exit")
    return parser


def add_overrides(parser: argparse.ArgumentParser, example: str) -> None:
    """Trailing ``KEY VALUE`` config overrides: the last argument of every program."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help=f"config overrides after every --flag, e.g. {example}")


def config_overrides(args: argparse.Namespace, flag_keys: Mapping[str, str]) -> list[str]:
    """The flags given (``flag_keys``: argparse dest -> config key) as ``KEY VALUE`` pairs, then the trailing ones.

    Flags override the config file; trailing pairs override the flags. A ``--flag`` among the trailing pairs is a
    usage error (argparse stops reading flags at the first pair, so it would be taken as a key).
    """
    misplaced = [o for o in args.opts[::2] if o.startswith("--")]
    if misplaced:
        raise ConfigError(f"{misplaced[0]} comes after the KEY VALUE overrides; put every --flag before them")
    if len(args.opts) % 2:
        raise ConfigError(f"KEY VALUE overrides come in pairs; got {len(args.opts)} words: {' '.join(args.opts)}")
    pairs = [x for flag, key in flag_keys.items() if getattr(args, flag, None) is not None
             for x in (key, str(getattr(args, flag)))]
    return [*pairs, *args.opts]


def usage_error(message: str) -> int:
    """Print one ``error:`` line on stderr and return :data:`USAGE_ERROR`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return USAGE_ERROR
