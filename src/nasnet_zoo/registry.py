"""The one registry of everything the package builds by name, timm style: classifiers (which are also the
backbones, ``create_model(name, features_only=True)``) and detectors, each kind in its own namespace.

A leaf module: it imports nothing of the package, so any module can register or look up builders without an
import cycle (``factory.create_model`` and ``detection.build_detector`` build them).
"""
from __future__ import annotations

import difflib
import fnmatch
import warnings
from typing import Callable, TypeVar

from torch import nn

#: The kinds of builder, and how the error for an unknown name tells the user to list them.
KINDS = {"model": "nasnet_zoo.list_models()", "detector": "nasnet_zoo.detection.list_detectors()"}

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_BUILDERS: dict[str, dict[str, Callable[..., nn.Module]]] = {kind: {} for kind in KINDS}
_RENAMED: dict[str, dict[str, tuple[str, str]]] = {kind: {} for kind in KINDS}  # old -> (new, why)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of builder {kind!r}; expected one of {', '.join(KINDS)}")


def register(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: register a keyword-only builder of ``kind`` under its function name."""
    _check_kind(kind)

    def add(fn: Builder) -> Builder:
        if fn.__name__ in _BUILDERS[kind]:
            raise ValueError(f"{kind} {fn.__name__!r} is registered twice")
        _BUILDERS[kind][fn.__name__] = fn
        return fn
    return add


def register_model(fn: Builder) -> Builder:
    """Decorator: register a classifier (and backbone) builder under its function name."""
    return register("model")(fn)


def register_renamed(kind: str, old: str, new: str, why: str = "") -> None:
    """Keep building ``new`` under its earlier name ``old``, with a FutureWarning naming ``new`` (and ``why``)."""
    _check_kind(kind)
    _RENAMED[kind][old] = (new, why)


def registered_names(kind: str, pattern: str | None = None) -> list[str]:
    """Registered names of ``kind``, optionally filtered by a shell-style pattern (earlier names not included)."""
    _check_kind(kind)
    names = sorted(_BUILDERS[kind])
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def builder(kind: str, name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an earlier name warns and gives the builder it was renamed to, an
    unknown name suggests the closest. Call it from the public entry point (its caller is warned about)."""
    _check_kind(kind)
    if name in _RENAMED[kind]:
        new, why = _RENAMED[kind][name]
        warnings.warn(f"{kind} {name!r} is now called {new!r}{f' ({why})' if why else ''}; the old name will be "
                      "removed in a future release", FutureWarning, stacklevel=3)
        name = new
    known = _BUILDERS[kind]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint} ({KINDS[kind]} lists all {len(known)})")
    return known[name]


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered classifier (``create_model`` builds it)."""
    return name in _BUILDERS["model"]
