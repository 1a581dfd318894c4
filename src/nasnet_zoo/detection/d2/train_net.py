"""Train and evaluate NASNet detectors with detectron2 (``tools/train_det.py --engine detectron2``).

detectron2's ``tools/train_net.py`` habits; the command line is every program's front (``cli.train_det.d2_args``:
``--config-file``, ``--output-dir``, ``--resume``, ``--eval-only``, the data flags, ``--num-gpus`` and trailing
``KEY VALUE`` overrides, here detectron2 CfgNode keys). Datasets come from COCO JSON paths, as in the torchvision
engine.
Metrics go to ``OUTPUT_DIR/metrics.json`` (JSON lines) and TensorBoard; final numbers to ``eval_results.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, HookBase, default_setup, launch
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from tqdm import tqdm

from nasnet_zoo.configs import CONFIG_ROOT
from nasnet_zoo.utils.io import atomic_write_json
from nasnet_zoo.utils.run_lock import RunLock, lock_run_folder

from ..config import DemoConfig
from ..data.demo_data import DigitsSpec, build_digits_dataset, uses_demo_data
from ..engine.comm import main_process_first
from ..engine.demo_pretrain import pretrain_on_digits
from .checkpoint import NASNetCheckpointer
from .config import add_nasnet_config, nasnet_overrides

TRAIN_DATASET, VAL_DATASET = "nasnet_zoo_train", "nasnet_zoo_val"
DEMO_CONFIG = CONFIG_ROOT / "detectron2" / "faster_rcnn_nasnet_digits_demo.yaml"
logger = logging.getLogger("nasnet_zoo.detection.d2")


class ProgressBar(HookBase):
    """A tqdm bar over iterations with the latest total loss."""

    def before_train(self) -> None:
        self._bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter, desc="train",
                         dynamic_ncols=True)

    def after_step(self) -> None:
        self._bar.update(1)
        if "total_loss" in self.trainer.storage.histories():
            self._bar.set_postfix(loss=f"{self.trainer.storage.history('total_loss').latest():.3f}")

    def after_train(self) -> None:
        self._bar.close()


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with COCO evaluation and our checkpointer (weight tags, atomic saves)."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> COCOEvaluator:
        return COCOEvaluator(dataset_name, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name))

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> "OrderedDict[str, Any]":
        """Evaluate, and keep the latest numbers in ``OUTPUT_DIR/eval_results.json``."""
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and results:
            atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), results)
        return results

    def build_hooks(self) -> list[HookBase]:
        # DefaultTrainer made a plain DetectionCheckpointer just before this call; swap it before hooks use it.
        self.checkpointer = NASNetCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR,
                                               trainer=weakref.proxy(self))
        progress = [ProgressBar()] if comm.is_main_process() else []
        return super().build_hooks() + progress


def digit_pretrained_backbone(cfg: CfgNode, spec: DigitsSpec) -> str:
    """The demo's backbone weights: ``MODEL.NASNET`` pretrained on train-split digits (seconds, cached and
    shared with the torchvision engine's demo)."""
    demo = DemoConfig()
    device = torch.device(cfg.MODEL.DEVICE)
    with main_process_first():
        return str(pretrain_on_digits(cfg.MODEL.NASNET.ARCH, nasnet_overrides(cfg), spec, demo.pretrain_steps,
                                      demo.pretrain_batch, device=device))


def register_coco_json(name: str, images: str, annotations: str, flag: str) -> int:
    """Register a COCO JSON dataset under ``name`` (replacing an earlier one); returns its class count."""
    if not annotations or not images:
        raise ValueError(f"--{flag}-images and --{flag}-ann go together; got images={images!r}, "
                         f"ann={annotations!r}")
    if not os.path.isfile(annotations):
        raise FileNotFoundError(f"--{flag}-ann {annotations} is not a file (expected a COCO instances JSON)")
    if not os.path.isdir(images):
        raise FileNotFoundError(f"--{flag}-images {images} is not a folder")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, annotations, images)
    with open(annotations, encoding="utf-8") as f:
        categories = json.load(f).get("categories", [])
    if not categories:
        raise ValueError(f"--{flag}-ann {annotations} lists no categories; a COCO instances JSON needs them")
    return len(categories)


def register_datasets(args: argparse.Namespace, cfg: CfgNode) -> None:
    """Dataset flags replace the config's datasets (a missing split becomes empty) and set the class count."""
    given = {"train": (args.train_images, args.train_ann), "val": (args.val_images, args.val_ann)}
    if not any(any(paths) for paths in given.values()):
        return
    counts = {}
    for split, name in (("train", TRAIN_DATASET), ("val", VAL_DATASET)):
        if any(given[split]):
            counts[split] = register_coco_json(name, *given[split], split)
    if len(set(counts.values())) > 1:
        raise ValueError(f"--train-ann has {counts['train']} categories but --val-ann has {counts['val']}")
    cfg.DATASETS.TRAIN = (TRAIN_DATASET,) if "train" in counts else ()
    cfg.DATASETS.TEST = (VAL_DATASET,) if "val" in counts else ()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = next(iter(counts.values()))


def setup(args: argparse.Namespace) -> CfgNode:
    """Config from file, dataset flags, then trailing overrides (which win); adapted to the machine."""
    cfg = get_cfg()
    add_nasnet_config(cfg)
    # No config and no data: the embedded digits demo, as in the torchvision engine.
    demo = not args.config_file and uses_demo_data(args.train_images, args.train_ann, args.val_images, args.val_ann)
    if demo and not DEMO_CONFIG.is_file():
        raise FileNotFoundError(f"the demo config {DEMO_CONFIG} is missing from this installation of nasnet-zoo: "
                                "reinstall the package, or give --config-file and dataset flags")
    config_file = args.config_file = str(DEMO_CONFIG) if demo else args.config_file or ""  # default_setup logs it
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"--config-file {config_file} does not exist (see configs/detectron2/)")
        cfg.merge_from_file(config_file)
    spec = DigitsSpec()
    if demo:
        with main_process_first():
            paths = build_digits_dataset(spec)
        args.train_images, args.train_ann = str(paths.train_images), str(paths.train_ann)
        args.val_images, args.val_ann = str(paths.val_images), str(paths.val_ann)
    register_datasets(args, cfg)
    cfg.merge_from_list(list(args.opts))  # the flags' keys, then the trailing pairs (cli.train_det.d2_args)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE=%s but CUDA is not available: running on the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        cfg.SOLVER.AMP.ENABLED = False  # mixed precision on CUDA only
    if demo and not cfg.MODEL.WEIGHTS:
        cfg.MODEL.WEIGHTS = digit_pretrained_backbone(cfg, spec)
    cfg.freeze()
    lock_output_dir(cfg.OUTPUT_DIR)  # before default_setup writes the config and log there
    default_setup(cfg, args)
    return cfg


#: The OUTPUT_DIR locks this process holds, until it exits (one writer per run folder, as train_det.py).
_HELD_LOCKS: list[RunLock] = []


def lock_output_dir(folder: str) -> None:
    """The global rank-0 worker takes OUTPUT_DIR's lock (nasnet_zoo.utils.run_lock) or raises RunFolderBusy."""
    if comm.get_rank() == 0 and not any(lock.folder == Path(folder) for lock in _HELD_LOCKS):
        _HELD_LOCKS.append(lock_run_folder(folder))


def run(args: argparse.Namespace) -> None:
    """One worker: evaluate (``--eval-only``) or train (evaluating at the end when there is a test set)."""
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        NASNetCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        Trainer.test(cfg, model)
        return
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()


def main(args: argparse.Namespace) -> None:
    """Launch one worker per GPU (``--num-gpus``) on the arguments of ``cli.train_det.d2_args``."""
    available = torch.cuda.device_count()
    if args.num_gpus > 1 and args.num_gpus > available:
        raise ValueError(f"--num-gpus {args.num_gpus} needs that many GPUs, this machine has {available}: "
                         "detectron2's trainer gives DDP GPU device ids, so CPU runs use one process")
    launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))

