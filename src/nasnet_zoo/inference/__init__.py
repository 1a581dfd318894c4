"""Inference mode for NASNet models: same outputs, less work per image.

``optimize_for_inference`` returns an eval-only copy of a ``NASNet`` or any range of its trunk
(``NASNetFeatures``, the detection backbones and box head: every ``NASNetTrunk``) in which

* every BatchNorm is folded into the convolution before it (for ``FactorizedReduce`` each half of the BN
  goes into its own path), so BN costs nothing;
* convolutions run through oneDNN with weights packed once and the ReLU between a separable conv's two
  halves fused into the first pointwise conv (``PackedConv2d``);
* the separable convs of a cell that read same-shaped inputs run together as grouped convolutions
  (``SepConvGroup``): 4 oneDNN calls instead of 4 per op;
* each cell computes ``relu(state)`` once per state and hands it to every op that starts with a ReLU;
* weights and activations use ``torch.channels_last``, in which oneDNN's depthwise convs and pools run 2-6x
  faster on CPU;
* factorized reductions subsample before their 1x1 convs, and TF "SAME" average pools with asymmetric
  padding divide by a cached map of real-cell counts instead of recomputing it per call.

The original model is left untouched; the copy has the same public interface (``forward``, ``end_points``,
``feature_info``) because only the stem and the cells are swapped for fused equivalents. Each op brings its
own fused form (``CellOp.fuse`` in ``nasnet_zoo.layers.ops``, built from the kernels in
``nasnet_zoo.layers.fused``); this package schedules them (``FusedCell``) and swaps them in (``fuse_trunk``).
"""
from ..layers.fused import SepConvGroup, fold_bn
from ..layers.packed_conv import PackedConv2d
from .fused_cell import FusedCell
from .optimize import fuse_trunk, optimize_for_inference, unfusable_norms

__all__ = ["FusedCell", "PackedConv2d", "SepConvGroup", "fold_bn", "fuse_trunk", "optimize_for_inference",
           "unfusable_norms"]
