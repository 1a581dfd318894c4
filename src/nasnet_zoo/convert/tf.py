"""TF-slim NASNet variables -> nasnet_zoo state dict.

TF-slim names every variable by scope (``cell_0/comb_iter_0/left/separable_5x5_1/depthwise_weights``) and
stores kernels HWIO (depthwise HWC1, fully connected [in, out]); ours follow the module tree and PyTorch's
OIHW. Variables come as a mapping name -> numpy array, from an ``.npz`` or a TF checkpoint.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import torch

_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

# (TF scope pattern inside a cell, our module path); applied to the part after "<cell>/".
_CELL_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^1x1$"), "pre0.conv"),
    (re.compile(r"^beginning_bn$"), "pre0.bn"),
    (re.compile(r"^prev_1x1$"), "pre1.conv"),
    (re.compile(r"^prev_bn$"), "pre1.bn"),
    (re.compile(r"^path1_conv$"), "pre1.path1"),
    (re.compile(r"^path2_conv$"), "pre1.path2"),
    (re.compile(r"^final_path_bn$"), "pre1.bn"),
    (re.compile(r"^comb_iter_(\d+)/(left|right)/separable_\dx\d_(\d)$"), "blocks.{0}.{1}.layers.{2m1}"),
    (re.compile(r"^comb_iter_(\d+)/(left|right)/bn_sep_\dx\d_(\d)$"), "blocks.{0}.{1}.layers.{2m1}.bn"),
    (re.compile(r"^comb_iter_(\d+)/(left|right)/1x1$"), "blocks.{0}.{1}.proj.conv"),
    (re.compile(r"^comb_iter_(\d+)/(left|right)/bn_1$"), "blocks.{0}.{1}.proj.bn"),
    (re.compile(r"^cell_output/reduction_(\d+)/path1_conv$"), "align.{0}.path1"),
    (re.compile(r"^cell_output/reduction_(\d+)/path2_conv$"), "align.{0}.path2"),
    (re.compile(r"^cell_output/reduction_(\d+)/final_path_bn$"), "align.{0}.bn"),
    (re.compile(r"^cell_output/reduction_(\d+)/path_conv$"), "align.{0}.conv"),
    (re.compile(r"^cell_output/reduction_(\d+)/path_bn$"), "align.{0}.bn"),
]
_TOP_RULES: dict[str, str] = {
    "conv0": "stem.conv", "conv0_bn": "stem.bn",
    "l1_stem_3x3": "stem.conv", "l1_stem_bn": "stem.bn",
    "final_layer/FC": "classifier",
}
_AUX_RULES: dict[str, str] = {
    "aux_logits/proj": "aux_head.proj", "aux_logits/aux_bn0": "aux_head.bn0",
    "aux_logits/Conv": "aux_head.conv", "aux_logits/aux_bn1": "aux_head.bn1",
    "aux_logits/FC": "aux_head.fc",
}
_CELL_NAME = re.compile(r"^((?:cell_stem|cell|reduction_cell)_\d+)/(.+)$")


def _module_path(scope: str) -> str:
    if scope in _TOP_RULES:
        return _TOP_RULES[scope]
    aux = re.match(r"^aux_\d+/(.+)$", scope)
    if aux and aux.group(1) in _AUX_RULES:
        return _AUX_RULES[aux.group(1)]
    cell = _CELL_NAME.match(scope)
    if cell:
        name, rest = cell.groups()
        for pattern, target in _CELL_RULES:
            m = pattern.match(rest)
            if m:
                groups = m.groups()
                path = target.replace("{2m1}", str(int(groups[2]) - 1) if len(groups) > 2 else "")
                return f"cells.{name}." + path.format(*groups)
    raise KeyError(scope)


def tf_name_to_key(name: str) -> str:
    """Our state-dict key for one TF-slim variable name (raises KeyError for names we do not know)."""
    name = name.removesuffix(":0")
    scope, _, leaf = name.rpartition("/")
    path = _module_path(scope)
    if leaf in _BN:
        return f"{path}.{_BN[leaf]}"
    if leaf == "depthwise_weights":
        return f"{path}.depthwise.weight"
    if leaf == "pointwise_weights":
        return f"{path}.pointwise.weight"
    if leaf == "weights":
        return f"{path}.weight"
    if leaf == "biases":
        return f"{path}.bias"
    raise KeyError(name)


def _to_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "depthwise_weights":  # [k, k, C, 1] -> [C, 1, k, k]
        return value.transpose(2, 3, 0, 1)
    if value.ndim == 4:  # HWIO -> OIHW
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:  # [in, out] -> [out, in]
        return value.T
    return value


def convert_tf(variables: Mapping[str, np.ndarray], *, drop_background: bool = False,
               skip_unknown: tuple[str, ...] = ("global_step",)) -> dict[str, torch.Tensor]:
    """Map TF-slim NASNet variables to our state dict.

    ``drop_background`` removes class 0 of a 1001-class head (TF-slim's background class) so the result
    has the 1000 ImageNet classes; by default the head is kept as is.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in variables.items():
        name = name.removeprefix("var/").removesuffix(":0")
        if name.split("/")[-1] in skip_unknown or "ExponentialMovingAverage" in name:
            continue
        try:
            key = tf_name_to_key(name)
        except KeyError:
            unknown.append(name)
            continue
        array = _to_torch_layout(name.rpartition("/")[2], np.asarray(value, dtype=np.float32))
        out[key] = torch.from_numpy(np.ascontiguousarray(array))
    if unknown:
        raise KeyError(f"{len(unknown)} TF variables have no NASNet counterpart, e.g. {unknown[:5]}; "
                       "is this a TF-slim NASNet-A checkpoint?")
    if drop_background:
        for key in ("classifier.weight", "classifier.bias", "aux_head.fc.weight", "aux_head.fc.bias"):
            if key in out and out[key].shape[0] == 1001:
                out[key] = out[key][1:].clone()
    return out
