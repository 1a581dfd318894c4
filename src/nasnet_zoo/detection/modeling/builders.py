"""Detector registry: Faster R-CNN with NASNet backbones in two designs, for named or searched cells.

The designs are named by what they are: ``*_fpn`` (an FPN over the stride 4..32 cells) and ``*_c4`` (the paper's
split at stride 16, as detectron2 names ResNet's C4 design: the RPN reads the stride-16 cells, the rest of the
network runs per proposal). The ``*_nas`` names of earlier releases still build the C4 design, with a warning.
Detectors are registered in the package's one registry (:mod:`nasnet_zoo.registry`, kind ``"detector"``).

Everything detection-specific (RPN, RoIHeads, anchors, box coder, RoIAlign, FPN) is torchvision's; this module
only wires NASNet cells into it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from nasnet_zoo.factory import create_model
from nasnet_zoo.genotypes import NASNET_A, Genotype
from nasnet_zoo.nasnet import NASNet
from nasnet_zoo.registry import builder, register, register_renamed, registered_names
from nasnet_zoo.utils.checkpoint import fit_state_dict, read_checkpoint

from .backbones import ConvRPNHead, DeferredRoIAlign, NASNetBoxHead, NASNetFPNBackbone, NASNetRPNBackbone
from .freeze import set_trainable_stages
from .norms import convert_norm, fpn_norm_layer, resolve_frozen_bn

_TF_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

#: Decorator: register a keyword-only detector builder under its function name (in the package's one registry).
register_detector = register("detector")

# Earlier names of the C4 detectors ("nas" read as "searched"; they are the paper's split design).
register_renamed("detector", "fasterrcnn_nasnet_nas", "fasterrcnn_nasnet_c4", why="the paper's C4 split design")
register_renamed("detector", "fasterrcnn_nasnet_a_mobile_nas", "fasterrcnn_nasnet_a_mobile_c4",
                 why="the paper's C4 split design")
register_renamed("detector", "fasterrcnn_nasnet_a_large_nas", "fasterrcnn_nasnet_a_large_c4",
                 why="the paper's C4 split design")

#: What a detector checkpoint records (at its top level) about the detector it holds.
DETECTOR_IDENTITY_FIELDS = ("model_name", "num_classes", "categories")


def detector_identity(model_name: str, num_classes: int, categories: list[int]) -> dict[str, Any]:
    """What a detector checkpoint stores beside its weights, so that it is refused for another detector."""
    return dict(zip(DETECTOR_IDENTITY_FIELDS, (model_name, num_classes, categories)))


def list_detectors() -> list[str]:
    return registered_names("detector")


def build_detector(name: str, *, num_classes: int = 91, backbone_weights: str | Mapping[str, Any] | None = None,
                   **options: Any) -> FasterRCNN:
    """Build a registered detector.

    ``num_classes`` counts the background (91 for COCO's id space, 81 for contiguous COCO labels).
    ``backbone_weights``: a weight tag or file for named backbones, or a NASNet classifier state dict.
    Options: see :func:`fasterrcnn_nasnet_fpn` and :func:`fasterrcnn_nasnet_c4`.
    """
    make = builder("detector", name)
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    return make(num_classes=num_classes, backbone_weights=backbone_weights, **options)  # type: ignore[return-value]


# ---- backbone construction ---------------------------------------------------------------------------------
def _load_classifier_state(model: NASNet, state: Mapping[str, Any] | str | Path) -> None:
    """Load NASNet classifier weights into a headless NASNet (classifier and aux head are dropped)."""
    source = "the backbone state dict"
    if isinstance(state, (str, Path)):
        source = str(state)
        if not Path(state).is_file():
            raise FileNotFoundError(f"backbone weights {state} do not exist")
        loaded = read_checkpoint(state)
        state = loaded.get("model", loaded)
    body = fit_state_dict(model, state, source=source, target="this backbone", optional=("classifier.", "aux_head."),
                          hint="were they saved from another architecture or width?")
    model.load_state_dict(body, strict=False)


def _make_nasnet(arch: str | None, genotype: Genotype, backbone_args: Mapping[str, Any],
                 backbone_weights: str | Mapping[str, Any] | None) -> NASNet:
    """The headless NASNet of a detector: registered ``arch`` (with published weights by tag), or ``genotype``
    at the sizes of ``backbone_args``; a weight file or state dict is fitted to the trunk, heads left out."""
    args = {"aux_head": False, "num_classes": 0, **backbone_args}
    if arch is not None and isinstance(backbone_weights, str) and not Path(backbone_weights).is_file():
        args["num_classes"] = backbone_args.get("num_classes", 1000)  # the hub loads full classifiers
        return create_model(arch, pretrained=backbone_weights, **args)  # type: ignore[return-value]
    sized = "cells_per_stack" in args and {"num_conv_filters", "penultimate_filters"} & set(args)
    if arch is None and not sized:
        raise ValueError("a custom genotype needs backbone_args with cells_per_stack and num_conv_filters "
                         "(or penultimate_filters)")
    model = create_model(arch or genotype, **args)
    if backbone_weights is not None:
        _load_classifier_state(model, backbone_weights)  # type: ignore[arg-type]
    return model  # type: ignore[return-value]


def _transform_args(model: NASNet, min_size: int | Sequence[int], max_size: int) -> dict[str, Any]:
    mean = tuple(model.pretrained_cfg.get("mean", _TF_NORM[0]))
    std = tuple(model.pretrained_cfg.get("std", _TF_NORM[1]))
    # size_divisible=32 keeps every SAME padding static, which keeps the forward traceable for ONNX.
    return dict(min_size=min_size, max_size=max_size, image_mean=list(mean), image_std=list(std), size_divisible=32)


# ---- the two designs ---------------------------------------------------------------------------------------
def fasterrcnn_nasnet_fpn(*, num_classes: int, backbone_weights: str | Mapping[str, Any] | None = None,
                          arch: str | None = None, genotype: Genotype = NASNET_A,
                          backbone_args: Mapping[str, Any] | None = None, norm: str = "FrozenBN",
                          gn_groups: int = 32, frozen_bn: bool | None = None,
                          trainable_stages: int = 3, fpn_channels: int = 256,
                          out_indices: Sequence[int] = (1, 2, 3, 4),
                          anchor_sizes: Sequence[int | Sequence[int]] = (32, 64, 128, 256, 512),
                          aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), box_head_dim: int = 1024,
                          box_head_convs: int = 0, min_size: int | Sequence[int] = 800, max_size: int = 1333, **rcnn_args: Any) -> FasterRCNN:
    """Design (a): FPN over the NASNet levels ``out_indices`` plus a pooled level, shared RPN and RoI heads.

    ``out_indices``: feature levels as in ``create_model(features_only=True)``; the default (1, 2, 3, 4) is
    strides 4/8/16/32 (detectron2's layout), (3, 4) is strides 16/32, the layout of torchvision's
    ``fasterrcnn_mobilenet_v3_large_fpn``, which skips the stride-4 FPN and RPN convs (about 20 of the 52 GFLOP
    at 320 px). ``anchor_sizes``: one size per pyramid level (``len(out_indices) + 1`` of them), or one sequence
    of sizes per level (torchvision's mobile layout puts all five sizes on each of its three levels).
    ``norm``: FrozenBN, BN, SyncBN or GN (:mod:`.norms`); under GN the FPN and the conv box head are normalised
    too. ``box_head_convs``: 0 for torchvision's two-FC head, N for N 3x3 convs then one FC (detectron2's
    "NconvNfc" head, torchvision's ``FastRCNNConvFCHead``).
    """
    norm = resolve_frozen_bn(norm, frozen_bn)
    nasnet = _make_nasnet(arch, genotype, backbone_args or {}, backbone_weights)
    set_trainable_stages(nasnet, trainable_stages)
    backbone = NASNetFPNBackbone(nasnet, fpn_channels, out_indices, norm_layer=fpn_norm_layer(norm))
    levels = list(backbone.output_shape())
    if len(anchor_sizes) != len(levels):
        raise ValueError(f"anchor_sizes needs one entry per pyramid level ({len(levels)} for out_indices "
                         f"{tuple(out_indices)} plus the pooled level), got {len(anchor_sizes)}: {list(anchor_sizes)}")
    per_level = tuple((s,) if isinstance(s, int) else tuple(s) for s in anchor_sizes)
    if len({len(sizes) for sizes in per_level}) != 1:
        raise ValueError(f"anchor_sizes must give every level the same number of sizes (the RPN head is shared "
                         f"across levels), got {list(anchor_sizes)}")
    anchors = AnchorGenerator(per_level, (tuple(aspect_ratios),) * len(levels))
    roi_pool = MultiScaleRoIAlign(levels[:-1], output_size=7, sampling_ratio=2)  # every level but the pooled one
    if box_head_convs < 0:
        raise ValueError(f"box_head_convs must be >= 0, got {box_head_convs}")
    box_head = FastRCNNConvFCHead((fpn_channels, 7, 7), [fpn_channels] * box_head_convs, [box_head_dim],
                                  norm_layer=fpn_norm_layer(norm)) if box_head_convs else \
        TwoMLPHead(fpn_channels * 7 * 7, box_head_dim)
    model = FasterRCNN(backbone, rpn_anchor_generator=anchors, box_roi_pool=roi_pool, box_head=box_head,
                       box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
                       **_transform_args(nasnet, min_size, max_size), **rcnn_args)
    return convert_norm(model, norm, gn_groups)


def fasterrcnn_nasnet_c4(*, num_classes: int, backbone_weights: str | Mapping[str, Any] | None = None,
                          arch: str | None = None, genotype: Genotype = NASNET_A,
                          backbone_args: Mapping[str, Any] | None = None, norm: str = "FrozenBN",
                          gn_groups: int = 32, frozen_bn: bool | None = None,
                          trainable_stages: int = 3, rpn_conv_channels: int = 512,
                          anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
                          aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), roi_output_size: int = 14,
                          box_head_chunk: int = 64, min_size: int | Sequence[int] = 800, max_size: int = 1333, **rcnn_args: Any) -> FasterRCNN:
    """Design (b), the paper's C4-style split (TF Object Detection API ``faster_rcnn_nas``): RPN on the last
    two stride-16 cells concatenated; the last reduction cell and the last stack run per proposal on
    ``roi_output_size`` RoIAligned crops as the second stage, ``box_head_chunk`` crops at a time out of training
    (pooled per chunk too, so memory does not grow with the proposal count).
    ``norm`` (:mod:`.norms`) applies to the cells on both sides of the split."""
    norm = resolve_frozen_bn(norm, frozen_bn)
    nasnet = _make_nasnet(arch, genotype, backbone_args or {}, backbone_weights)
    set_trainable_stages(nasnet, trainable_stages)
    backbone = NASNetRPNBackbone(nasnet)
    box_head = NASNetBoxHead(nasnet, chunk=box_head_chunk)
    anchors = AnchorGenerator((tuple(anchor_sizes),), (tuple(aspect_ratios),))
    rpn_head = ConvRPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], rpn_conv_channels)
    roi_pool = DeferredRoIAlign(["0"], output_size=roi_output_size, sampling_ratio=2)  # pooled per chunk
    model = FasterRCNN(backbone, rpn_anchor_generator=anchors, rpn_head=rpn_head, box_roi_pool=roi_pool,
                       box_head=box_head, box_predictor=FastRCNNPredictor(box_head.out_channels, num_classes),
                       **_transform_args(nasnet, min_size, max_size), **rcnn_args)
    return convert_norm(model, norm, gn_groups)


register_detector(fasterrcnn_nasnet_fpn)
register_detector(fasterrcnn_nasnet_c4)


@register_detector
def fasterrcnn_nasnet_a_mobile_fpn(**options: Any) -> FasterRCNN:
    """NASNet-A Mobile (4 @ 1056) + FPN."""
    return fasterrcnn_nasnet_fpn(arch="nasnet_a_mobile", **options)


@register_detector
def fasterrcnn_nasnet_a_large_fpn(**options: Any) -> FasterRCNN:
    """NASNet-A Large (6 @ 4032) + FPN."""
    return fasterrcnn_nasnet_fpn(arch="nasnet_a_large", **options)


@register_detector
def fasterrcnn_nasnet_a_mobile_c4(**options: Any) -> FasterRCNN:
    """NASNet-A Mobile in the paper's C4 split design."""
    return fasterrcnn_nasnet_c4(arch="nasnet_a_mobile", **options)


@register_detector
def fasterrcnn_nasnet_a_large_c4(**options: Any) -> FasterRCNN:
    """NASNet-A Large in the paper's C4 split design (the paper's COCO model)."""
    return fasterrcnn_nasnet_c4(arch="nasnet_a_large", **options)
