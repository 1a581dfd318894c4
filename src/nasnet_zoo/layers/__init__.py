"""Layers of NASNet networks: TF-exact padding, the search-space ops, ScheduledDropPath."""
from .drop_path import ScheduledDropPath, set_drop_path_progress
from .ops import BNConfig, CellOp, ConvBN, FactorizedReduce, FusedForm, SepConv, build_op
from .padding import PADDING_MODES, Conv2dSame, Pool2dSame, same_padding

__all__ = [
    "BNConfig", "CellOp", "ConvBN", "Conv2dSame", "FactorizedReduce", "FusedForm", "PADDING_MODES", "Pool2dSame",
    "ScheduledDropPath", "SepConv", "build_op", "same_padding", "set_drop_path_progress",
]
