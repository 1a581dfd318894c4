"""Run configuration: dataclass defaults <- YAML file (``--config-file``) <- trailing ``KEY VALUE`` overrides.

Keys are dotted paths into nested dataclasses, spelled as the fields are: lower case (what :func:`dump_config`
writes). Old spellings keep loading with one FutureWarning per file or override list that names the new keys:
another case (the detection configs' ``SOLVER.BASE_LR``) and renamed fields, which a dataclass declares in its
``RENAMED_KEYS`` class table (``{"filters": "num_conv_filters"}``). Unknown keys fail before any work starts,
naming the closest valid key.
"""
from __future__ import annotations

import dataclasses
import difflib
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override that does not match the config's fields."""


def _fields(obj: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def config_keys(obj: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config, as overrides and YAML files address them."""
    keys = []
    for name in _fields(obj):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _coerce(value: Any, current: Any, hint: Any, key: str) -> Any:
    """Parse a CLI string (or YAML value) into the type of the field it replaces."""
    if isinstance(value, str) and not isinstance(current, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"{key}: cannot parse {value!r}: {err}") from None
    if value is None or current is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            value = [value]
        return type(current)(value)
    if isinstance(current, str):
        return str(value)
    if type(value) is not type(current):
        raise ConfigError(f"{key}: expected {type(current).__name__}, got {value!r}")
    return value


def _field_name(node: Any, part: str) -> str | None:
    """The field ``part`` names in ``node``: exactly, in another case, or by an old name in ``RENAMED_KEYS``."""
    fields = _fields(node)
    if part in fields:
        return part
    match = next((f for f in fields if f.lower() == part.lower()), None)
    renamed: Mapping[str, str] = getattr(type(node), "RENAMED_KEYS", {})
    return match or next((new for old, new in renamed.items() if old.lower() == part.lower()), None)


def _resolve(cfg: Any, key: str) -> tuple[Any, str, str]:
    """The section holding ``key``, the field's name there, and the key's canonical spelling."""
    parts = key.split(".")
    node, canonical = cfg, []
    for depth, part in enumerate(parts):
        match = _field_name(node, part)
        if match is None:
            close = difflib.get_close_matches(key.lower(), config_keys(cfg), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        canonical.append(match)
        if depth == len(parts) - 1:
            return node, match, ".".join(canonical)
        node = getattr(node, match)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"config key {key!r}: {'.'.join(canonical)} is a value, not a section")
    raise AssertionError("unreachable")


def set_value(cfg: Any, key: str, value: Any, old_keys: dict[str, str] | None = None) -> None:
    """Set ``key`` (a section takes a mapping); an old spelling is recorded in ``old_keys`` as old -> new."""
    node, name, canonical = _resolve(cfg, key)
    current = getattr(node, name)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} is a section; give its keys, not {value!r}")
        for sub, sub_value in value.items():
            set_value(cfg, f"{key}.{sub}", sub_value, old_keys)
        return
    if canonical != key and old_keys is not None:
        old_keys[key] = canonical
    hints = get_type_hints(type(node))
    setattr(node, name, _coerce(value, current, hints.get(name), canonical))


def merge_dict(cfg: Any, data: dict[str, Any], prefix: str = "", old_keys: dict[str, str] | None = None) -> None:
    for key, value in data.items():
        full = f"{prefix}{key}"
        node, name, _ = _resolve(cfg, full)
        if dataclasses.is_dataclass(getattr(node, name)) and isinstance(value, dict):
            merge_dict(cfg, value, full + ".", old_keys)
        else:
            set_value(cfg, full, value, old_keys)


def _warn_old_keys(source: str, old_keys: Mapping[str, str]) -> None:
    """One FutureWarning line for the old key spellings of one source, naming the new ones."""
    if not old_keys:
        return
    pairs = [f"{old} -> {new}" for old, new in old_keys.items()]
    more = f" (and {len(pairs) - 4} more)" if len(pairs) > 4 else ""
    warnings.warn(f"{source}: deprecated config key spelling, read as the new one: {', '.join(pairs[:4])}{more}; "
                  "write keys as dump_config does (lower case, current names)", FutureWarning, stacklevel=3)


def load_config(default: T, config_file: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Return a copy of ``default`` updated by the YAML file and then by ``KEY VALUE`` pairs."""
    cfg = dataclasses.replace(default) if not _has_nested(default) else _deepcopy(default)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        data.pop("_BASE_", None)
        old_keys: dict[str, str] = {}
        merge_dict(cfg, data, old_keys=old_keys)
        _warn_old_keys(str(path), old_keys)
    if len(overrides) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; got an odd count: {list(overrides)}")
    old_keys = {}
    for key, value in zip(overrides[::2], overrides[1::2]):
        set_value(cfg, key, value, old_keys)
    _warn_old_keys("overrides", old_keys)
    return cfg


def _has_nested(obj: Any) -> bool:
    return any(dataclasses.is_dataclass(getattr(obj, f)) for f in _fields(obj))


def _deepcopy(obj: T) -> T:
    import copy
    return copy.deepcopy(obj)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any, path: str | Path) -> None:
    from .utils.io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
