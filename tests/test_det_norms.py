"""Detector normalisation: the norm choice, PreciseBN, the small-batch warning, eval mode independent of the
batch, and a from-scratch overfit that holds in eval mode."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from nasnet_zoo import create_model
from nasnet_zoo.config import load_config
from nasnet_zoo.detection import build_detector
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.detection.modeling.norms import (check_norm, check_norm_runtime, convert_norm, gn_group_count,
                                        small_batch_warning)
from nasnet_zoo.detection.engine.precise_bn import batchnorm_layers, recompute_bn_stats
from nasnet_zoo.testing import randomize_batchnorm

TINY = dict(cells_per_stack=1, num_conv_filters=4, stem_multiplier=0.25)
LIGHT = dict(min_size=64, max_size=64, fpn_channels=16, box_head_dim=32, rpn_pre_nms_top_n_test=50,
             rpn_post_nms_top_n_test=16, box_score_thresh=0.0, box_detections_per_img=20)

pytestmark = pytest.mark.usefixtures("one_thread")


def _detector(norm: str, design: str = "fpn", **options) -> nn.Module:
    if design == "c4":
        light = {k: v for k, v in LIGHT.items() if k not in ("fpn_channels", "box_head_dim")}
        return build_detector("fasterrcnn_nasnet_a_mobile_c4", num_classes=4, backbone_args=dict(TINY), norm=norm,
                              roi_output_size=7, **light, **options)
    return build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=4, backbone_args=dict(TINY), norm=norm,
                          **LIGHT, **options)


def _stem_bn(model: nn.Module) -> nn.Module:
    return next(m for name, m in model.named_modules() if name.endswith("stem.bn"))


def _kinds(model: nn.Module) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                                               FrozenBatchNorm2d))}


def test_group_count_is_the_largest_divisor_within_the_limit():
    assert [gn_group_count(c, 32) for c in (256, 44, 132, 16, 7)] == [32, 22, 22, 16, 7]
    assert gn_group_count(12, 8) == 6 and gn_group_count(7, 4) == 1
    with pytest.raises(ValueError, match="model.gn_groups"):
        gn_group_count(16, 0)
    assert check_norm("gn") == "GN"
    with pytest.raises(ValueError, match="FrozenBN, BN, SyncBN, GN"):
        check_norm("LayerNorm")


@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_every_norm_layer_is_converted(design):
    assert _kinds(_detector("FrozenBN", design)) == {FrozenBatchNorm2d}
    assert _kinds(_detector("GN", design, **({"box_head_convs": 2} if design == "fpn" else {}))) == {nn.GroupNorm}
    # BN trains, except in stages frozen by trainable_stages: those keep frozen statistics
    bn = _detector("BN", design, trainable_stages=2)
    assert _kinds(bn) == {nn.BatchNorm2d, FrozenBatchNorm2d}
    assert isinstance(_stem_bn(bn), FrozenBatchNorm2d)
    assert _kinds(_detector("SyncBN", design, trainable_stages=4)) == {nn.SyncBatchNorm}


def test_gn_normalises_the_fpn_and_the_conv_box_head():
    model = _detector("GN", box_head_convs=2)
    assert any(isinstance(m, nn.GroupNorm) for m in model.backbone.fpn.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.roi_heads.box_head.modules()) == 2
    # the other norms leave the FPN and the head unnormalised, as before (nothing pretrained to freeze there)
    frozen = _detector("FrozenBN", box_head_convs=2)
    assert not _kinds(frozen.backbone.fpn) and not _kinds(frozen.roi_heads.box_head)


def test_gn_refuses_batchnorm_weights():
    state = randomize_batchnorm(create_model("nasnet_a_mobile", num_classes=10, **TINY)).state_dict()
    with pytest.raises(ValueError, match="cannot take over the trained BatchNorm statistics"):
        build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                       backbone_weights=state, norm="GN")
    build_detector("fasterrcnn_nasnet_a_mobile_fpn", num_classes=3, backbone_args=dict(TINY),
                   backbone_weights=state, norm="FrozenBN")


def test_frozen_bn_key_still_works_and_maps_onto_norm(caplog):
    cfg = load_config(DetConfig(), None, ["model.frozen_bn", "false"])
    with caplog.at_level(logging.WARNING):
        cfg.validate()
    assert cfg.model.norm == "BN" and cfg.model.frozen_bn is None and "model.frozen_bn is deprecated" in caplog.text
    cfg = load_config(DetConfig(), None, ["model.frozen_bn", "false", "model.norm", "gn"])
    cfg.validate()
    assert cfg.model.norm == "GN"
    with pytest.raises(ValueError, match="contradicts model.norm GN"):
        load_config(DetConfig(), None, ["model.frozen_bn", "true", "model.norm", "GN"]).validate()
    with pytest.raises(ValueError, match="frozen_bn true contradicts norm GN"):
        _detector("GN", frozen_bn=True)
    assert _kinds(_detector("FrozenBN", frozen_bn=False, trainable_stages=4)) == {nn.BatchNorm2d}


def test_small_batch_bn_warns_in_one_line(caplog):
    with caplog.at_level(logging.WARNING):
        message = small_batch_warning("BN", 2, world_size=4)
    assert message is not None and "\n" not in message and caplog.text.count("eval-mode results may not reflect") == 1
    assert "model.norm GN" in message and "2 images per process" in message
    assert small_batch_warning("SyncBN", 2, world_size=2) is not None  # 4 images in all
    for quiet in (("SyncBN", 2, 4), ("BN", 8, 1), ("GN", 1, 1), ("FrozenBN", 1, 1)):
        assert small_batch_warning(*quiet) is None


def test_syncbn_on_cpu_processes_is_refused():
    with pytest.raises(ValueError, match="SyncBN needs CUDA"):
        check_norm_runtime("SyncBN", torch.device("cpu"), world_size=2)
    check_norm_runtime("SyncBN", torch.device("cpu"), world_size=1)  # one process: plain BatchNorm, as in torch


def _images(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 64, 64, generator=g) for _ in range(n)]


def _precise(model: nn.Module) -> nn.Module:
    recompute_bn_stats(model, [_images(2, s) for s in range(3)], 3, torch.device("cpu"))
    return model


@pytest.mark.parametrize("setting", ["FrozenBN", "GN", "PreciseBN"])
@pytest.mark.parametrize("design", ["fpn", "c4"])
def test_eval_detections_do_not_depend_on_the_other_images_in_the_batch(setting, design):
    """The same image alone and beside another gives the same detections in eval mode."""
    if setting == "FrozenBN":  # frozen statistics that are not the identity
        model = convert_norm(randomize_batchnorm(_detector("BN", design, trainable_stages=4)), "FrozenBN")
    elif setting == "GN":
        model = _detector("GN", design)
    else:
        model = _precise(_detector("BN", design))
    model.eval()
    image, other = _images(2, seed=7)
    with torch.no_grad():
        alone = model([image])[0]
        paired = model([image, other])[0]
        assert len(alone["boxes"]) > 0
        torch.testing.assert_close(paired, alone, rtol=1e-4, atol=1e-4)
        if setting == "PreciseBN":  # control: BatchNorm on batch statistics does depend on the batch
            for bn in batchnorm_layers(model):
                bn.train()
            alone, paired = model([image])[0], model([image, other])[0]
            assert len(alone["scores"]) != len(paired["scores"]) or \
                not torch.allclose(alone["scores"], paired["scores"], atol=1e-3)


def test_precise_bn_averages_batch_statistics_and_keeps_the_rng():
    model = _detector("BN", trainable_stages=4)
    model.train()
    stem_bn = _stem_bn(model)
    seen: list[torch.Tensor] = []
    stem_bn.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].detach()))
    batches = [_images(2, s) for s in range(4)]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    used = recompute_bn_stats(model, batches, 3, torch.device("cpu"))
    torch.testing.assert_close(torch.rand(3), expected_next)  # the RNG stream is as if nothing ran
    assert used == 3 and len(seen) == 3
    mean = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in seen]).mean(0)
    torch.testing.assert_close(stem_bn.running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem_bn.running_var, var, rtol=1e-4, atol=1e-5)
    assert model.training and stem_bn.momentum == pytest.approx(0.0003)  # modes and momenta restored
    assert recompute_bn_stats(convert_norm(_detector("BN"), "FrozenBN"), batches, 3, torch.device("cpu")) == 0



def _precise_bn_rank(rank: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)  # the same weights on both ranks, as DDP keeps them
        model = _detector("BN", trainable_stages=4)
        recompute_bn_stats(model, [_images(2, 10 * rank + s) for s in range(2)], 2, torch.device("cpu"))
        torch.save(_stem_bn(model).running_mean, f"{out}/{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_precise_bn_averages_the_ranks_under_ddp(tmp_path):
    """Two gloo processes see different batches and end with the same statistics: the mean of theirs."""
    torch.multiprocessing.spawn(_precise_bn_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    got = [torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1)]
    alone = []
    for rank in (0, 1):
        torch.manual_seed(0)
        model = _detector("BN", trainable_stages=4)
        recompute_bn_stats(model, [_images(2, 10 * rank + s) for s in range(2)], 2, torch.device("cpu"))
        alone.append(_stem_bn(model).running_mean)
    assert not torch.allclose(alone[0], alone[1])
    torch.testing.assert_close(got[0], got[1])
    torch.testing.assert_close(got[0], (alone[0] + alone[1]) / 2, rtol=1e-5, atol=1e-6)

@pytest.mark.slow
def test_from_scratch_gn_overfit_holds_in_eval_mode(tmp_path):
    """The twin of bench/det_overfit.py: 4 digit canvases, GN from scratch, batches of 2; COCOeval in eval mode
    on the same images, not the training loss, must show the fit (35-80 s here, by load)."""
    from nasnet_zoo.detection.data.demo_data import DigitsSpec, build_digits_dataset
    from nasnet_zoo.detection.engine.runner import run

    paths = build_digits_dataset(DigitsSpec(num_train=4, num_val=1, canvas=64, min_digit=20, max_digit=30,
                                            max_per_image=1), root=tmp_path / "data")
    cfg = load_config(DetConfig(), None, [
        "data.train_images", str(paths.train_images), "data.train_ann", str(paths.train_ann),
        "data.val_images", str(paths.train_images), "data.val_ann", str(paths.train_ann), "data.num_workers", "0",
        "model.norm", "GN", "model.gn_groups", "2", "model.trainable_stages", "4",
        "model.backbone_args", "{cells_per_stack: 1, num_conv_filters: 4, stem_multiplier: 0.25}",
        "model.options", "{fpn_channels: 32, box_head_dim: 64, anchor_sizes: [8, 16, 32, 64, 128], "
                         "box_batch_size_per_image: 32, rpn_batch_size_per_image: 64, rpn_pre_nms_top_n_train: 200, "
                         "rpn_post_nms_top_n_train: 50, rpn_pre_nms_top_n_test: 100, rpn_post_nms_top_n_test: 20}",
        "input.min_size", "[64]", "input.max_size", "64", "input.hflip_prob", "0.0",
        "solver.max_iter", "120", "solver.ims_per_batch", "2", "solver.base_lr", "0.04", "solver.warmup_iters", "10",
        "solver.lr_schedule", "cosine", "solver.clip_grad_norm", "10", "solver.log_period", "20",
        "solver.checkpoint_period", "1000", "threads", "1", "device", "cpu", "output_dir", str(tmp_path / "run")])
    threads = torch.get_num_threads()
    try:
        metrics = run(cfg)
    finally:
        torch.set_num_threads(threads)
    assert metrics["AP50"] >= 0.9, metrics
