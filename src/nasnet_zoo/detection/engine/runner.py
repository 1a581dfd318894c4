"""What ``tools/train_det.py`` does: build data and model from a config, then train and/or evaluate."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from nasnet_zoo.config import dump_config
from nasnet_zoo.utils.checkpoint import find_checkpoint, load_checkpoint
from nasnet_zoo.utils.distributed import DistInfo, cleanup_distributed, init_distributed
from nasnet_zoo.utils.io import atomic_write_json
from nasnet_zoo.utils.run_lock import is_main_process, lock_run_folder
from nasnet_zoo.utils.seeding import seed_everything

from ..config import DetConfig
from ..data.coco import CocoDetection, CocoFormatError
from ..data.demo_data import build_digits_dataset, digits_spec, uses_demo_data
from ..data.transforms import RandomHorizontalFlip
from ..evaluation.coco_evaluation import require_coco_evaluation
from ..modeling.builders import detector_identity
from ..modeling.norms import check_norm_runtime, small_batch_warning
from ..modeling.trained import WRITER, build_model
from .comm import main_process_first
from .cpu_speed import CpuSpeedNote, resized_size
from .demo_pretrain import pretrain_on_digits
from .train_loop import evaluate_and_report, make_train_state, train

log = logging.getLogger(__name__)

BAD_IMAGES_NAME = "bad_images.json"


def prepare_demo(cfg: DetConfig, device: torch.device, dist_info: DistInfo, pretrain: bool = True) -> None:
    """Point the config at the embedded digits dataset and a digit-pretrained backbone (both cached)."""
    demo = cfg.demo
    spec = digits_spec(demo, seed=cfg.seed)
    with main_process_first():
        paths = build_digits_dataset(spec)
    if dist_info.is_main:
        print(f"demo data: scikit-learn digits on {spec.canvas}px canvases, {spec.num_train} train / "
              f"{spec.num_val} val images, COCO format in {paths.root}", flush=True)
    cfg.data.train_images, cfg.data.train_ann = str(paths.train_images), str(paths.train_ann)
    cfg.data.val_images, cfg.data.val_ann = str(paths.val_images), str(paths.val_ann)
    if pretrain and demo.pretrain_steps > 0 and not cfg.model.backbone_weights:
        with main_process_first():
            weights = pretrain_on_digits(_backbone_arch(cfg.model.name), cfg.model.backbone_args, spec,
                                         demo.pretrain_steps, demo.pretrain_batch, device=device)
        cfg.model.backbone_weights = str(weights)


def _backbone_arch(model_name: str) -> str:
    for arch in ("nasnet_a_mobile", "nasnet_a_large"):
        if arch in model_name:
            return arch
    raise ValueError(f"demo backbone pretraining needs a named NASNet-A detector, not {model_name!r}; "
                     "set model.backbone_weights or demo.pretrain_steps 0")


def _warn_about_norm(cfg: DetConfig, dist_info: DistInfo) -> None:
    """One line each for the two norm settings whose eval-mode results mislead: small-batch BN, and FrozenBN
    over untrained statistics (no normalisation at all)."""
    small_batch_warning(cfg.model.norm, cfg.solver.ims_per_batch, dist_info.world_size)
    if cfg.model.norm == "FrozenBN" and not cfg.model.backbone_weights:
        log.warning("model.norm FrozenBN without model.backbone_weights freezes untrained statistics (mean 0, "
                    "variance 1): the backbone trains without normalisation. model.norm GN is the from-scratch setting")


def run(cfg: DetConfig, *, resume: bool = False, eval_only: bool = False, weights: str | None = None) -> dict[str, float]:
    """Train (unless ``eval_only``) and evaluate; returns the COCO metrics on rank 0."""
    cfg.validate()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    with lock_run_folder(cfg.output_dir, enabled=is_main_process()):  # one run per folder; raises RunFolderBusy
        dist_info, device = init_distributed(cfg.device)
        try:
            return _run(cfg, dist_info, device, resume, eval_only, weights)
        finally:
            cleanup_distributed()


def cpu_speed_note(cfg: DetConfig, train_set: CocoDetection, device: torch.device,
                   dist_info: DistInfo) -> CpuSpeedNote:
    """The CPU guidance for this run (active only on a CPU at a clearly slow size; it changes no setting)."""
    sizes = train_set.image_sizes() or [(cfg.input.max_size, cfg.input.max_size)]
    size = resized_size(sizes, cfg.input.min_size, cfg.input.max_size)
    return CpuSpeedNote(size, device, cfg.solver.max_iter, enabled=dist_info.is_main)


def check_images(datasets: list[CocoDetection], output_dir: Path, dist_info: DistInfo) -> None:
    """data.check_images: decode every image (each process a share), then name all unreadable ones at once."""
    bad: list[dict[str, Any]] = []
    for dataset in datasets:
        bad += dataset.unreadable_images(rank=dist_info.rank, world_size=dist_info.world_size,
                                         progress=dist_info.is_main)
    if dist_info.distributed:
        shares: list[Any] = [None] * dist_info.world_size
        torch.distributed.all_gather_object(shares, bad)
        bad = [b for share in shares for b in share]
    if not bad:
        if dist_info.is_main:
            print(f"data.check_images: all {sum(len(d.imgs) for d in datasets)} images decode", flush=True)
        return
    listing = output_dir / BAD_IMAGES_NAME
    if dist_info.is_main:
        atomic_write_json(listing, bad)
    shown = "\n".join(f"  {b['file']} (image id {b['image_id']}): {b['error']}" for b in bad[:50])
    more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
    raise CocoFormatError(f"data.check_images: {len(bad)} images cannot be decoded (all listed in {listing}):\n"
                          f"{shown}{more}\nReplace or remove them (drop them from the annotation file, or list the "
                          "good ids in data.image_ids), or set data.skip_bad_images true to skip them while training")


def _run(cfg: DetConfig, dist_info: DistInfo, device: torch.device, resume: bool, eval_only: bool,
         weights: str | None) -> dict[str, float]:
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if eval_only and not weights:
        raise ValueError("--eval-only needs --weights PATH (for example OUTPUT/model_final.pth)")
    demo = uses_demo_data(cfg.data.train_ann, cfg.data.val_ann)
    if cfg.data.val_ann or demo:
        require_coco_evaluation()  # this run evaluates: a missing extra stops it now, not after its training
    if demo:
        prepare_demo(cfg, device, dist_info, pretrain=not eval_only)
    # Seed after the demo's (cached or fresh) backbone pretraining, so both paths train the same detector.
    seed_everything(cfg.seed + dist_info.rank)
    subset = list(cfg.data.image_ids)
    val = CocoDetection(cfg.data.val_images, cfg.data.val_ann, train=False, image_ids=subset) \
        if cfg.data.val_ann else None
    train_set = None
    if not eval_only:
        train_set = CocoDetection(cfg.data.train_images, cfg.data.train_ann, train=True,
                                  keep_empty=cfg.data.keep_empty, skip_bad_images=cfg.data.skip_bad_images,
                                  transforms=RandomHorizontalFlip(cfg.input.hflip_prob), image_ids=subset)
    if cfg.data.check_images:
        check_images([d for d in (train_set, val) if d is not None], output_dir, dist_info)
    reference = train_set or val
    assert reference is not None  # validate() guarantees one of them
    if val is not None and train_set is not None and val.categories.coco_ids != train_set.categories.coco_ids:
        raise ValueError(f"train and val annotation files list different categories ({len(train_set.categories.coco_ids)}"
                         f" vs {len(val.categories.coco_ids)}); use files from the same dataset")
    categories = reference.categories
    identity = detector_identity(cfg.model.name, categories.num_classes, list(categories.coco_ids))
    check_norm_runtime(cfg.model.norm, device, dist_info.world_size)
    model = build_model(cfg, categories.num_classes).to(device)
    if not eval_only and dist_info.is_main:
        _warn_about_norm(cfg, dist_info)
    if dist_info.is_main:
        dump_config(cfg, output_dir / "config.yaml")

    if eval_only:
        load_checkpoint(weights, model, identity, written_by=WRITER)  # type: ignore[arg-type]
        if val is None:
            raise ValueError("--eval-only needs --val-images and --val-ann")
        return evaluate_and_report(model, val, device=device, dist_info=dist_info, output_dir=output_dir,
                                   vis=cfg.test.vis, vis_score_thresh=cfg.test.vis_score_thresh)

    state = make_train_state(model, cfg.solver, device)
    checkpoint = find_checkpoint(output_dir) if resume else None
    if checkpoint is not None:
        state.restore(load_checkpoint(checkpoint, model, identity, written_by=WRITER))
        print(f"resumed from {checkpoint} at iteration {state.iteration}", flush=True)
    elif resume:
        print(f"--resume: no checkpoint in {output_dir}, starting from iteration 0", flush=True)
    elif weights:
        load_checkpoint(weights, model, identity, written_by=WRITER)

    def eval_hook(iteration: int) -> None:
        if val is not None:
            evaluate_and_report(model, val, device=device, dist_info=dist_info, output_dir=output_dir,
                                iteration=iteration)

    assert train_set is not None
    speed_note = cpu_speed_note(cfg, train_set, device, dist_info)
    speed_note.start()
    train(state, train_set, cfg.solver, device=device, dist_info=dist_info, output_dir=output_dir, identity=identity,
          seed=cfg.seed, num_workers=cfg.data.num_workers, grouping=cfg.data.aspect_ratio_grouping,
          eval_hook=eval_hook, eval_period=cfg.test.eval_period,
          precise_bn_iters=cfg.test.precise_bn.num_iter if cfg.test.precise_bn.enabled else 0,
          on_iteration=speed_note.iteration_done)
    if val is None:
        return {}
    return evaluate_and_report(model, val, device=device, dist_info=dist_info, output_dir=output_dir,
                               vis=cfg.test.vis, vis_score_thresh=cfg.test.vis_score_thresh, iteration=state.iteration)

