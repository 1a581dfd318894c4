"""Seconds-long backbone pretraining for the demo: classify single digits at the scale the detector sees them.

A detector trained from scratch learns too little in a CPU demo's minutes (REFERENCE.md); ImageNet weights
cannot be downloaded there. Pretraining the same NASNet on the demo's own training digits is the honest
substitute: it only ever sees the train split's handwriting.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nasnet_zoo.engine import SchedulerStep, TrainStep
from nasnet_zoo.factory import create_model
from nasnet_zoo.hub import cache_dir as nasnet_cache_dir
from nasnet_zoo.utils.io import atomic_torch_save

from ..data.demo_data import DigitsSpec, load_digit_images, render_digit

log = logging.getLogger(__name__)


def digit_patches(images: np.ndarray, labels: np.ndarray, count: int, spec: DigitsSpec, patch: int,
                  rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` patches with one digit each, drawn like the demo canvases (tint, noise, size, position)."""
    batch = np.empty((count, patch, patch, 3), np.float32)
    picks = rng.integers(len(images), size=count)
    for i, k in enumerate(picks):
        size = int(rng.integers(spec.min_digit, min(spec.max_digit, patch) + 1))
        x, y = (int(v) for v in rng.integers(0, patch - size + 1, size=2))
        canvas = rng.uniform(0.0, 0.25, size=(patch, patch, 1)).astype(np.float32) * np.ones(3, np.float32)
        ink = render_digit(images[k], size)[..., None] * rng.uniform(0.55, 1.0, size=3).astype(np.float32)
        canvas[y:y + size, x:x + size] = np.maximum(canvas[y:y + size, x:x + size], ink)
        batch[i] = canvas
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels[picks])


def pretrain_on_digits(arch: str, backbone_args: Mapping[str, Any], spec: DigitsSpec, steps: int,
                       batch_size: int = 32, patch: int = 48, device: torch.device = torch.device("cpu"),
                       cache_dir: Path | None = None) -> Path:
    """Train ``arch`` (+ overrides) to classify train-split digits; cached by its settings. Returns the file."""
    settings = {"arch": arch, "args": dict(backbone_args), "spec": spec.__dict__, "steps": steps,
                "batch": batch_size, "patch": patch, "v": 2}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = (cache_dir or nasnet_cache_dir() / "demo") / f"backbone-{arch}-{key}.pth"
    if path.is_file():
        log.info("digit-pretrained backbone: %s (cached)", path)
        return path
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed + 1)
    (train_x, train_y), (val_x, val_y) = load_digit_images(spec.seed, spec.val_fraction)
    # TF's BN decay (0.9997) would leave the running statistics at their initial values after a few hundred
    # steps; a faster average makes the eval-mode (and frozen) statistics real. Shapes are unchanged.
    args = {**backbone_args, "bn_momentum": 0.1}
    model = create_model(arch, num_classes=10, aux_head=False, dense_dropout_keep_prob=1.0, **args).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    core = TrainStep(optimizer, device=device, hooks=[SchedulerStep(scheduler)])
    model.train()
    for _ in tqdm(range(steps), desc="pretrain backbone on digits", dynamic_ncols=True):
        x, y = digit_patches(train_x, train_y, batch_size, spec, patch, rng)
        core.run(lambda: F.cross_entropy(model((x.to(device) - 0.5) / 0.5), y.to(device)))
    model.eval()
    with torch.no_grad():
        x, y = digit_patches(val_x, val_y, 500, spec, patch, np.random.default_rng(spec.seed + 2))
        accuracy = float((model((x.to(device) - 0.5) / 0.5).argmax(1).cpu() == y).float().mean())
    print(f"backbone pretrained on train-split digits for {steps} steps: held-out digit accuracy {accuracy:.3f}",
          flush=True)
    atomic_torch_save({"model": model.state_dict(), "arch": arch, "backbone_args": dict(backbone_args),
                       "digit_accuracy": accuracy}, path)
    return path
