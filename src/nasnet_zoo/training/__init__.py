"""Training classifiers: recipes, the training loop, checkpoints, exported weights, retraining searched cells."""
from __future__ import annotations

from ..utils.checkpoint import ArchitectureMismatchError
from .config import TrainConfig, recipe_path
from .engine import evaluate_only, train
from .export import load_trained
from .retrain import retrain_top

__all__ = ["ArchitectureMismatchError", "TrainConfig", "evaluate_only", "load_trained", "recipe_path",
           "retrain_top", "train"]
