"""The low-proposal setting (test.proposals) and the paper design's chunked second stage."""
from __future__ import annotations

import pytest
import torch

from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.modeling.builders import build_detector
from nasnet_zoo.detection.modeling.trained import build_model

pytestmark = pytest.mark.usefixtures("one_thread")
BACKBONE = {"cells_per_stack": 1, "num_conv_filters": 8}


def test_chunked_second_stage_gives_the_same_detections() -> None:
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_nasnet_a_mobile_c4", num_classes=5, backbone_args=BACKBONE, min_size=160,
                           max_size=256, box_score_thresh=0.05).eval()
    image = torch.rand(3, 240, 320)
    outputs = []
    for chunk in (10_000, 64, 7):  # all crops at once, the default chunk, an odd chunk with a remainder
        model.roi_heads.box_head.chunk = chunk
        with torch.no_grad():
            outputs.append(model([image])[0])
    for out in outputs[1:]:
        assert len(out["boxes"]) == len(outputs[0]["boxes"]) > 0
        assert torch.allclose(out["boxes"], outputs[0]["boxes"], atol=1e-4)
        assert torch.allclose(out["scores"], outputs[0]["scores"], atol=1e-6)


def test_c4_second_stage_pools_one_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops are pooled per chunk (memory bounded whatever the proposal count), images kept in order."""
    import torchvision.ops.poolers as poolers

    torch.manual_seed(0)
    model = build_detector("fasterrcnn_nasnet_a_mobile_c4", num_classes=5, backbone_args=BACKBONE, min_size=160,
                           max_size=256, box_score_thresh=0.05, rpn_post_nms_top_n_test=150).eval()
    images = [torch.rand(3, 240, 320), torch.rand(3, 200, 200)]
    with torch.no_grad():
        model.roi_heads.box_head.chunk = 10_000
        at_once = model(images)
        pooled: list[int] = []
        real_roi_align = poolers.roi_align
        monkeypatch.setattr(poolers, "roi_align", lambda x, rois, *a, **k: pooled.append(len(rois)) or
                            real_roi_align(x, rois, *a, **k))
        model.roi_heads.box_head.chunk = 32
        chunked = model(images)
    assert max(pooled) <= 32 and sum(pooled) > 2 * 32  # several chunks, none larger than the chunk
    for ref, out in zip(at_once, chunked):
        assert len(out["boxes"]) == len(ref["boxes"]) > 0
        assert torch.allclose(out["boxes"], ref["boxes"], atol=1e-4)
        assert torch.equal(out["labels"], ref["labels"])
        assert torch.allclose(out["scores"], ref["scores"], atol=1e-6)


def test_box_head_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="box_head_chunk"):
        build_detector("fasterrcnn_nasnet_a_mobile_c4", num_classes=3, backbone_args=BACKBONE, box_head_chunk=0)


@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_test_proposals_limits_what_reaches_the_second_stage(design: str) -> None:
    cfg = DetConfig()
    cfg.model.name = f"fasterrcnn_nasnet_a_mobile_{design}"
    cfg.model.backbone_args = dict(BACKBONE)
    cfg.input.min_size, cfg.input.max_size = [160], 256
    seen: list[int] = []
    counts: dict[int, int] = {}
    for proposals in (0, 50):
        cfg.test.proposals = proposals
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=4).eval()
        hook = model.roi_heads.box_roi_pool.register_forward_hook(
            lambda _m, args, _out: seen.append(sum(len(b) for b in args[1])))
        with torch.no_grad():
            model([torch.rand(3, 200, 240)])
        hook.remove()
        counts[proposals] = seen[-1]
    assert counts[50] == 50 < counts[0]  # the default keeps torchvision's 1000 (as many as the image yields)
