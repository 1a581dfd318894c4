"""Optional dependencies: a feature whose extra is not installed fails with one line naming the extra.

The base install (``pip install nasnet-zoo``) holds what ``create_model``, the weights and inference need.
Everything else is an extra (``pyproject.toml``): ``detection`` (pycocotools), ``viz`` (matplotlib),
``tensorboard``, ``onnx``, ``gpu``, ``ray``, ``demo`` (what ``make demo`` runs) and ``dev`` (the tests). A
module that needs one imports it through :func:`require` at first use, never at module import, so that
``import nasnet_zoo`` stays light and the user sees ``pip install 'nasnet-zoo[EXTRA]'`` instead of an
ImportError traceback. The programs (``nasnet-zoo COMMAND``) print :class:`MissingExtra` as one
``error:`` line and exit 2.
"""
from __future__ import annotations

import functools
import importlib
import sys
import types
from typing import Callable, ParamSpec

P = ParamSpec("P")


class MissingExtra(ImportError):
    """A feature needs an optional dependency that is not installed; ``str()`` is one line with the fix."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature, self.extra = feature, extra
        super().__init__(f"{feature} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'nasnet-zoo[{extra}]'", name=module)

    def __str__(self) -> str:  # ImportError's str() would add nothing, but keep it one line whatever it does
        return self.msg


def require(module: str, *, extra: str, feature: str) -> types.ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtra` naming ``extra`` (no chained traceback).

    Only a missing ``module`` itself (or its top-level package) becomes MissingExtra: an ImportError from
    inside an installed package is a real fault and propagates as it is.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is None or err.name.split(".")[0] != top:
            raise
        raise MissingExtra(feature, extra, top) from None


def exits_on_missing_extra(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap a program's ``main``: a :class:`MissingExtra` becomes ``error: <its line>`` on stderr and exit code 2,
    without a traceback (``nasnet-zoo COMMAND`` and ``tools/*.py`` alike)."""
    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except MissingExtra as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 2
    return wrapper
