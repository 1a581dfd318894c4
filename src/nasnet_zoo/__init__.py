"""nasnet-zoo: NASNet (Zoph et al., CVPR 2018) search, models, detection and deployment."""
from __future__ import annotations

__version__ = "0.1.0"

from . import models as _models  # noqa: F401  (fills the registry)
from .cell import Cell
from .convert import convert_state_dict
from .features import FeatureInfo, NASNetFeatures
from .genotypes import NASNET_A, OPS, Block, CellGenotype, Genotype, GenotypeError
from .inference import optimize_for_inference
from .layers.drop_path import ScheduledDropPath, set_drop_path_progress
from .nasnet import CellRange, NASNet, NASNetConfig, NASNetTrunk, build_nasnet
from .factory import create_model, list_models
from .registry import is_model, register_model

__all__ = [
    "Block", "Cell", "CellGenotype", "CellRange", "FeatureInfo", "Genotype", "GenotypeError", "NASNET_A", "NASNet",
    "NASNetConfig", "NASNetFeatures", "NASNetTrunk", "OPS", "ScheduledDropPath", "build_nasnet", "convert_state_dict",
    "create_model", "is_model", "list_models", "optimize_for_inference", "register_model",
    "set_drop_path_progress", "__version__",
]
