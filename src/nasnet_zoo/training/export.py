"""Final weights as safetensors plus a manifest entry, so a trained model loads by path or by name.

``OUTPUT/manifest.json`` follows ``pretrained/manifest.json`` (``{"format_version": 2, "weights": [entry]}``),
so ``NASNET_ZOO_MANIFEST=OUTPUT/manifest.json`` adds the run to the zoo; its ``build`` section records how to
rebuild the network (registry name or genotype, plus every ``NASNetConfig`` field) for ``load_trained``.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..convert.files import read_weights_file
from ..genotypes import Genotype
from ..hub.manifest import FORMAT_VERSION, manifest_entry
from ..factory import create_model
from ..nasnet import NASNet, NASNetConfig, nasnet_identity
from ..utils.checkpoint import check_identity, fit_state_dict, load_checkpoint
from ..utils.io import atomic_path, atomic_write_json, sha256_file

WEIGHTS_NAME = "model_final.safetensors"
MANIFEST_NAME = "manifest.json"
SEARCHED_ARCHITECTURE = "nasnet_searched"  # manifest architecture of a genotype-built network (no registry name)


def save_weights(model: NASNet, path: str | Path, *, registry_name: str | None) -> None:
    """Contiguous CPU tensors in safetensors, with the structure as metadata for load-time checks."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"num_classes": str(model.config.num_classes),
                "nasnet_zoo.structure": json.dumps(nasnet_identity(model))}
    if registry_name:
        metadata["architecture"] = registry_name
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def export_run(model: NASNet, output_dir: str | Path, *, registry_name: str | None, dataset: str, eval_split: str,
               metrics: dict[str, float], input_cfg: dict[str, Any], run_name: str) -> Path:
    """Write ``model_final.safetensors`` and ``manifest.json``; return the weights path."""
    output_dir = Path(output_dir).resolve()
    weights = output_dir / WEIGHTS_NAME
    save_weights(model, weights, registry_name=registry_name)
    arch = registry_name or SEARCHED_ARCHITECTURE
    entry = manifest_entry(
        architecture=arch, tag=run_name, urls=[weights.as_uri()], sha256=sha256_file(weights), source="ours",
        file_format="safetensors", num_classes=model.config.num_classes, dataset=dataset,
        metrics={**metrics, "measured_by": f"tools/train_cls.py evaluation on the {dataset} {eval_split} split"},
        license="trained locally; inherits the data set's terms", input_cfg=input_cfg, padding=model.config.padding,
        notes=f"trained by tools/train_cls.py into {output_dir}")
    build = {"model": registry_name, "genotype": model.genotype.to_dict(), "config": asdict(model.config)}
    atomic_write_json(output_dir / MANIFEST_NAME, {"format_version": FORMAT_VERSION, "weights": [entry], "build": build})
    return weights


def load_trained(output_dir: str | Path, *, device: str | torch.device = "cpu") -> NASNet:
    """Rebuild the network a run trained (registry model or searched genotype) and load its final weights."""
    output_dir = Path(output_dir)
    manifest_path = output_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} does not exist: is {output_dir} a finished tools/train_cls.py run?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    build, entry = manifest["build"], manifest["weights"][0]
    config = NASNetConfig(**build["config"])
    model = create_model(build["model"] or Genotype.from_dict(build["genotype"]), **asdict(config))
    model.pretrained_cfg = {"architecture": build["model"], **entry["input"], "dataset": entry["dataset"],
                            "metrics": entry["metrics"], "num_classes": config.num_classes}
    load_weights(model, output_dir / WEIGHTS_NAME)
    return model.to(device).eval()


def load_weights(model: NASNet, path: str | Path) -> None:
    """Strictly load our safetensors or a training checkpoint, refusing another architecture by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        state, _, metadata = read_weights_file(path, source="ours")
        structure = metadata.get("nasnet_zoo.structure")
        check_identity(nasnet_identity(model), json.loads(structure) if structure else None, str(path))
        model.load_state_dict(fit_state_dict(model, state, source=str(path), optional=("aux_head.",)), strict=False)
    else:
        load_checkpoint(path, model, nasnet_identity(model), written_by="tools/train_cls.py", optional=("aux_head.",))
