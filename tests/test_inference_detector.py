"""optimize_for_inference on whole detectors: both designs, NASNet-A and sampled genotypes, same detections.

The detectors are shrunk (1 cell per stack, 8 filters) with a sharpened random class head and a low score
threshold, so each image yields many detections whose boxes, labels and scores are compared one for one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasnet_zoo.detection.modeling.builders import build_detector
from nasnet_zoo.genotypes import NASNET_A, Genotype
from nasnet_zoo.inference import optimize_for_inference
from nasnet_zoo.inference.fused_cell import FusedCell
from nasnet_zoo.nasnet import NASNetTrunk
from nasnet_zoo.onnx.parity import synthetic_image
from nasnet_zoo.search.spaces import NASNetSpace

pytestmark = pytest.mark.usefixtures("one_thread")
BACKBONE = {"cells_per_stack": 1, "num_conv_filters": 8}


def sampled_genotype(seed: int) -> Genotype:
    return NASNetSpace().to_genotype(NASNetSpace().random_decisions(np.random.default_rng(seed)), name=f"sample{seed}")


def detector(design: str, genotype: Genotype, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_detector(f"fasterrcnn_nasnet_{design}", num_classes=5, genotype=genotype, backbone_args=BACKBONE,
                           min_size=160, max_size=256, box_score_thresh=0.05, **options).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(30)
    return model


def images() -> list[torch.Tensor]:
    return [torch.from_numpy(synthetic_image(h, w, seed=s)).permute(2, 0, 1).float() / 255
            for h, w, s in ((240, 320, 1), (300, 200, 2))]


@pytest.mark.parametrize("design", ["fpn", "c4"])
@pytest.mark.parametrize("genotype", [NASNET_A, sampled_genotype(3), sampled_genotype(8)], ids=lambda g: g.name)
def test_fused_detector_keeps_the_detections(design: str, genotype: Genotype) -> None:
    model = detector(design, genotype)
    fused = optimize_for_inference(model)
    trunks = [m for m in fused.modules() if isinstance(m, NASNetTrunk)]
    assert trunks and all(isinstance(c, FusedCell) for t in trunks for c in t.cells.values())
    if design == "c4":  # the paper design's second stage is fused too
        assert all(isinstance(c, FusedCell) for c in fused.roi_heads.box_head.cells.values())
    with torch.no_grad():
        eager_out, fused_out = model(images()), fused(images())
    for a, b in zip(eager_out, fused_out):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        assert torch.equal(a["labels"], b["labels"])
        assert (a["boxes"] - b["boxes"]).abs().max() < 1e-3
        assert (a["scores"] - b["scores"]).abs().max() < 1e-4
    with pytest.raises(RuntimeError, match="optimised for inference"):
        fused.train()


def test_original_detector_is_untouched() -> None:
    model = detector("fpn", NASNET_A)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_group_norm_detector_is_refused_with_the_reason() -> None:
    model = detector("fpn", NASNET_A, norm="GN", gn_groups=4)
    with pytest.raises(TypeError, match="GroupNorm"):
        optimize_for_inference(model)


def test_a_model_without_nasnet_cells_is_refused() -> None:
    with pytest.raises(TypeError, match="expects a NASNet"):
        optimize_for_inference(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))
