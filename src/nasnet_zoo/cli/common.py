"""What every program's command line shares (detectron2's ``default_argument_parser`` habit).

One parser factory for the shared flags (``--config-file``, ``--output-dir``, ``--resume``, ``--eval-only`` where
a program evaluates), one mapping from a program's convenience flags to its config keys, trailing ``KEY VALUE``
overrides last, one resume rule (:func:`load_run_config`), and one way to report a usage or config error: one
``error:`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from ..config import ConfigError, config_keys, load_config

T = TypeVar("T")
#: The resolved settings every run folder keeps (``dump_config``), the base of ``--resume``.
SAVED_CONFIG = "config.yaml"

#: Exit code of every usage, config or input error (argparse's own).
USAGE_ERROR = 2


def default_argument_parser(prog: str, description: str | None, *,
                            config_help: str = "YAML settings (examples in configs/)",
                            output_help: str = "the run folder", resume_help: str = "continue the run in --output-dir",
                            run_folder: bool = True, eval_only: bool = False) -> argparse.ArgumentParser:
    """The parser every ``nasnet-zoo`` program starts from; add the program's own flags, then :func:`add_overrides`.

    ``run_folder=False`` leaves out ``--output-dir`` and ``--resume`` for a program that writes no run folder
    (export-onnx), rather than accepting flags that would do nothing; ``eval_only`` adds ``--eval-only``.
    """
    parser = argparse.ArgumentParser(prog=f"nasnet-zoo {prog}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help=config_help)
    if run_folder:
        parser.add_argument("--output-dir", help=output_help)
        parser.add_argument("--resume", action="store_true", help=resume_help)
    if eval_only:
        parser.add_argument("--eval-only", action="store_true", help="evaluate and exit")
    return parser


class RenamedFlag(argparse.Action):
    """A flag spelled first by its current name, then by old ones that still work with a FutureWarning naming the
    current one: ``add_argument("--num-conv-filters", "--filters", type=int, action=RenamedFlag)``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string != self.option_strings[0]:
            warnings.warn(f"{option_string} is deprecated; use {self.option_strings[0]}", FutureWarning,
                          stacklevel=2)
        setattr(namespace, self.dest, values)


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


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def load_run_config(default: T, args: argparse.Namespace, flag_keys: Mapping[str, str], *,
                    may_change_on_resume: Sequence[str]) -> T:
    """The settings of a run: ``default`` <- ``--config-file`` <- flags <- trailing pairs.

    The one resume rule: with ``--resume`` the run's own ``OUTPUT/config.yaml`` is the base instead of
    ``default``, the file, flags and pairs given apply on top, and a key that then differs from the saved run is
    refused with the reason unless the program declares it in ``may_change_on_resume`` (a key, or a section such
    as ``"child"``): what defines the run's state cannot change under its checkpoint.
    """
    overrides = config_overrides(args, flag_keys)
    if not args.resume:
        return load_config(default, args.config_file, overrides)
    if not args.output_dir:
        raise ConfigError("--resume needs --output-dir, the folder of the run to continue")
    saved = Path(args.output_dir) / SAVED_CONFIG
    if not saved.is_file():
        raise ConfigError(f"--resume: {saved} does not exist; is {args.output_dir} the folder of a run of this "
                          "program?")
    original = load_config(default, saved)
    cfg = load_config(original, args.config_file, overrides)
    allowed = tuple(may_change_on_resume)
    changed = [k for k in config_keys(cfg) if _value(cfg, k) != _value(original, k)
               and not any(k == a or k.startswith(a + ".") for a in allowed)]
    if changed:
        raise ConfigError(f"--resume cannot change {', '.join(changed)}: they define the state saved in "
                          f"{args.output_dir}; start a new --output-dir instead (on resume these may change: "
                          f"{', '.join(allowed)})")
    return cfg


def usage_error(message: str) -> int:
    """Print one ``error:`` line on stderr and return :data:`USAGE_ERROR`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return USAGE_ERROR
