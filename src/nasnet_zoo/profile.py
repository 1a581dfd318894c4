"""Model size and cost as the NASNet paper counts them.

* **Parameters**: every parameter of the inference network (frozen ones too), without the auxiliary head (it
  exists only in training). BatchNorm's gamma/beta count, its moving statistics do not (they are buffers).
  This gives TF-slim's trainable-variable count: 5,291,035 for NASNet-A Mobile with 1001 classes.
* **Mult-adds**: multiply-accumulates of the convolutions (depthwise ones included, k*k per output value)
  and the fully connected layer, for one image at the given size. Pooling, BN, ReLU and additions are not
  counted; with this rule NASNet-A Mobile is 564M at 224 and Large 23.8B at 331, as in the paper (table 2).

Counting runs one forward pass of a single image under ``FlopCounterMode`` (which reports 2 FLOPs per
multiply-add) on the model's own device. Models on the ``meta`` device work too (no memory, no compute), but
PyTorch's meta kernels are slower on CPU than a real batch-1 forward of NASNet-A, so prefer a real model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModelCost", "count_parameters", "count_mult_adds", "model_cost", "PAPER_COSTS"]

#: Published sizes (paper tables 1 and 2): name -> (params, mult-adds at the model's default size or None).
PAPER_COSTS: dict[str, tuple[float, float | None]] = {
    "nasnet_a_mobile": (5.3e6, 564e6),
    "nasnet_a_large": (88.9e6, 23.8e9),
    "nasnet_a_cifar": (3.3e6, None),
}

# FlopCounterMode's ops that are convolutions or fully connected layers.
_COUNTED_OPS = ("convolution", "addmm", "mm", "bmm", "linear")


@dataclass(frozen=True)
class ModelCost:
    """Parameters and mult-adds of one model at one input size."""

    params: int
    mult_adds: int
    input_size: tuple[int, int, int]

    def as_dict(self) -> dict[str, object]:
        return {"params": self.params, "mult_adds": self.mult_adds, "input_size": list(self.input_size)}


def count_parameters(model: nn.Module, *, include_aux: bool = False) -> int:
    """Parameters (frozen ones included), by default without the auxiliary head (the paper's inference count)."""
    return sum(p.numel() for name, p in model.named_parameters() if include_aux or not name.startswith("aux_head."))


def count_mult_adds(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of convolutions and linear layers for one image of ``input_size`` (C, H, W), in eval mode
    (the model's training flag is restored afterwards)."""
    weight = next(model.parameters())
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model.eval()(torch.zeros((1, *input_size), device=weight.device, dtype=weight.dtype))
    finally:
        model.train(was_training)
    flops = counter.get_flop_counts().get("Global", {})
    counted = sum(v for op, v in flops.items() if str(op).split(".")[1] in _COUNTED_OPS)
    return counted // 2


def model_cost(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> ModelCost:
    """Parameters and mult-adds; ``input_size`` defaults to the model's ``pretrained_cfg["input_size"]``."""
    if input_size is None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        if "input_size" not in cfg:
            raise ValueError("this model carries no default input size (pretrained_cfg['input_size']); "
                             "pass input_size=(C, H, W)")
        input_size = tuple(cfg["input_size"])  # type: ignore[assignment]
    return ModelCost(count_parameters(model), count_mult_adds(model, input_size), tuple(input_size))  # type: ignore[arg-type]
