"""Cadene ``pretrainedmodels`` NASNet-A (nasnetamobile, nasnetalarge) state dicts -> ours.

Cadene spells each TF-slim scope as a module (``cell_0.comb_iter_0_left.separable_1.depthwise_conv2d``) and
already stores PyTorch layouts, so only names change. Its normal cells are numbered with gaps in the mobile
model (``cell_0-3, 6-9, 12-15``) and without gaps in the large one; ranking the indices recovers TF's
``cell_0 ... cell_{N-1}`` for both. timm's ``nasnetalarge`` keeps these names (see ``timm.py``).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

# (pattern on the part after "<cell>.", our module path inside the cell).
_CELL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^conv_1x1\.(conv|bn)\.(\w+)$"), "pre0.{0}.{1}"),
    (re.compile(r"^conv_prev_1x1\.(conv|bn)\.(\w+)$"), "pre1.{0}.{1}"),
    (re.compile(r"^path_([12])\.conv\.(\w+)$"), "pre1.path{0}.{1}"),
    (re.compile(r"^final_path_bn\.(\w+)$"), "pre1.bn.{0}"),
    (re.compile(r"^comb_iter_(\d+)_(left|right)\.separable_([12])\.(depthwise|pointwise)_conv2d\.(\w+)$"),
     "blocks.{0}.{1}.layers.{2m1}.{3}.{4}"),
    (re.compile(r"^comb_iter_(\d+)_(left|right)\.bn_sep_([12])\.(\w+)$"), "blocks.{0}.{1}.layers.{2m1}.bn.{3}"),
]
_TOP_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^conv0\.(conv|bn)\.(\w+)$"), "stem.{0}.{1}"),
    (re.compile(r"^last_linear\.(\w+)$"), "classifier.{0}"),
]
_CELL = re.compile(r"^(cell_stem_\d+|reduction_cell_\d+|cell_(\d+))\.(.+)$")
_WRAPPER_PREFIXES = ("module.", "model.")


def strip_wrapper_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DataParallel/DDP) or ``model.`` prefix a training script may have saved."""
    out = dict(state_dict)
    for prefix in _WRAPPER_PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _apply(rules: list[tuple[re.Pattern[str], str]], name: str) -> str | None:
    for pattern, target in rules:
        m = pattern.match(name)
        if m:
            groups = m.groups()
            if "{2m1}" in target:  # separable_1/2 -> layers.0/1
                target = target.replace("{2m1}", str(int(groups[2]) - 1))
            return target.format(*groups)
    return None


def normal_cell_renumbering(keys: list[str]) -> dict[int, int]:
    """Cadene normal-cell index -> TF-slim index (rank among the indices present)."""
    indices = sorted({int(m.group(2)) for k in keys if (m := _CELL.match(k)) and m.group(2) is not None})
    return {old: new for new, old in enumerate(indices)}


def convert_cadene(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a Cadene-layout NASNet-A state dict (mobile or large) to ours; unknown keys raise a KeyError."""
    state_dict = strip_wrapper_prefix(state_dict)
    renumber = normal_cell_renumbering(list(state_dict))
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        cell = _CELL.match(key)
        if cell:
            name, index, rest = cell.groups()
            path = _apply(_CELL_RULES, rest)
            if index is not None:
                name = f"cell_{renumber[int(index)]}"
            target = f"cells.{name}.{path}" if path else None
        else:
            target = _apply(_TOP_RULES, key)
        if target is None:
            unknown.append(key)
        else:
            out[target] = value
    if unknown:
        raise KeyError(f"{len(unknown)} keys have no NASNet-A counterpart, e.g. {unknown[:5]}; is this a "
                       "Cadene pretrainedmodels / timm NASNet-A state dict?")
    return out
