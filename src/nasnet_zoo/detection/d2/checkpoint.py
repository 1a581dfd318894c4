"""``MODEL.WEIGHTS`` for NASNet detectors: detectron2 checkpoints, our weight tags and our classifier files.

A weight tag (``nasnet_a_mobile.tf_in1k``) goes through ``create_model(pretrained=tag)``, so it resolves
exactly as the model zoo does; our ``.pth``/``.safetensors`` classifier checkpoints are recognised by their
keys. Either way, the NASNet keys are renamed to where each part lives in the detectron2 model.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from nasnet_zoo import NASNetFeatures, create_model, is_model
from nasnet_zoo.utils.checkpoint import CheckpointError, fit_state_dict, read_checkpoint
from nasnet_zoo.utils.io import atomic_torch_save, atomic_write_text

from ..modeling.backbones import NASNetBoxHead, NASNetRPNBackbone

#: Modules that hold NASNet parts under the classifier's own names (``stem.*``, ``cells.<name>.*``).
NASNET_PARTS = (NASNetFeatures, NASNetRPNBackbone, NASNetBoxHead)
_CLASSIFIER_PREFIXES = ("stem.", "cells.", "classifier.", "aux_head.")


def weight_tag_arch(path: str) -> str | None:
    """The architecture of a weight tag such as ``nasnet_a_mobile.tf_in1k``, or None if ``path`` is not one."""
    if not path or os.path.exists(path) or "/" in path or "://" in path:
        return None
    arch = path.split(".", 1)[0]
    return arch if is_model(arch) else None


def is_nasnet_classifier_state(state: Mapping[str, Any]) -> bool:
    """True for a state dict of a ``nasnet_zoo`` NASNet (rather than of a detectron2 model)."""
    return bool(state) and any(k.startswith("cells.") for k in state) and all(
        k.startswith(_CLASSIFIER_PREFIXES) for k in state)


def nasnet_to_detectron2(model: nn.Module, state: Mapping[str, torch.Tensor], *,
                         origin: str = "the NASNet state dict") -> dict[str, torch.Tensor]:
    """Rename a NASNet classifier state dict to the keys of ``model``'s NASNet parts.

    Every parameter and buffer of those parts must be found with the same shape; the classifier, the aux head
    and cells the detector does not use are left out.
    """
    parts = [(prefix, module) for prefix, module in model.named_modules() if isinstance(module, NASNET_PARTS)]
    if not parts:
        raise ValueError(f"{type(model).__name__} has no NASNet backbone to load classifier weights into")
    renamed: dict[str, torch.Tensor] = {}
    for prefix, module in parts:
        fitted = fit_state_dict(module, state, source=origin, target="MODEL.NASNET", allow_unexpected=True,
                                hint="check MODEL.NASNET.ARCH (or GENOTYPE_FILE, CELLS_PER_STACK, FILTERS) against "
                                     "the weights")
        renamed.update({f"{prefix}.{key}": value for key, value in fitted.items()})
    return renamed


class NASNetCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` that also reads our weights, and writes checkpoints atomically."""

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        arch = weight_tag_arch(path)
        if arch is None:
            return super().load(path, checkpointables)
        self.logger.info(f"[NASNetCheckpointer] loading weight tag {path} through nasnet_zoo.create_model")
        state = create_model(arch, pretrained=path).state_dict()
        incompatible = self._load_model({"model": nasnet_to_detectron2(self.model, state, origin=path)})
        self._log_incompatible_keys(incompatible)
        return {}

    def _load_file(self, filename: str) -> dict[str, Any]:
        """Weights-only reads (nothing in the file can run code); detectron2's pickle formats are refused."""
        if filename.endswith(".safetensors"):
            from safetensors.torch import load_file
            loaded: dict[str, Any] = {"model": load_file(filename)}
        elif filename.endswith(".pkl"):
            raise CheckpointError(f"refused to load {filename}: .pkl files are Python pickles, and unpickling can run "
                                  "code. Convert it once, in a session you trust, to a .pth of tensors "
                                  "(torch.save({'model': state_dict}, NEW.pth)) and load that")
        else:
            loaded = read_checkpoint(filename, written_by="detectron2")
            if "model" not in loaded:
                loaded = {"model": loaded}
            loaded["matching_heuristics"] = True  # as detectron2 reads native .pth files
        if is_nasnet_classifier_state(loaded["model"]):
            self.logger.info(f"[NASNetCheckpointer] {filename} holds NASNet classifier weights: loading the backbone")
            return {"model": nasnet_to_detectron2(self.model, loaded["model"], origin=filename)}
        return loaded

    def save(self, name: str, **kwargs: Any) -> None:
        """Like detectron2's, but a kill mid-write leaves the previous checkpoint and pointer intact."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), **{k: v.state_dict() for k, v in self.checkpointables.items()},
                **kwargs}
        basename = f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {os.path.join(self.save_dir, basename)}")
        atomic_torch_save(data, os.path.join(self.save_dir, basename))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)
