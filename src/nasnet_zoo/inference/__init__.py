"""Inference mode for NASNet models: same outputs, less work per image.

``optimize_for_inference`` returns an eval-only copy of a ``NASNet`` or ``NASNetFeatures`` in which

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
``feature_info``) because only the stem and the cells are swapped for fused equivalents.
"""
from .fused_cell import FusedCell
from .fused_ops import SepConvGroup, fold_bn
from .optimize import optimize_for_inference
from .packed_conv import PackedConv2d

__all__ = ["FusedCell", "PackedConv2d", "SepConvGroup", "fold_bn", "optimize_for_inference"]
