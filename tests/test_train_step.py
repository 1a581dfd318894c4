"""The shared training step (nasnet_zoo.engine): the amp setting, clipping, the non-finite loss guard, hooks."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from nasnet_zoo.config import ConfigError, load_config
from nasnet_zoo.detection.config import DetConfig
from nasnet_zoo.engine import (AMP_SETTINGS, NonFiniteLossError, SchedulerStep, StepHook, TrainStep, amp_setting,
                               resolve_amp)
from nasnet_zoo.search.child import ChildConfig
from nasnet_zoo.training import TrainConfig


def linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 1)


def mse(model: torch.nn.Module, scale: float = 1.0):
    x, y = torch.ones(8, 4), torch.full((8, 1), 100.0)
    return lambda: scale * ((model(x) - y) ** 2).mean()


@pytest.mark.parametrize("setting, cpu, cuda", [("off", None, None), ("auto", None, torch.float16),
                                                ("bf16", torch.bfloat16, torch.bfloat16)])
def test_every_amp_setting_resolves_on_cpu_and_cuda(setting, cpu, cuda):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current spellings warn about nothing
        assert resolve_amp(setting, "cpu") is cpu
        assert resolve_amp(setting, torch.device("cuda", 0)) is cuda


def test_fp16_needs_cuda_and_bad_values_name_the_allowed_ones():
    assert resolve_amp("fp16", "cuda") is torch.float16
    with pytest.raises(ValueError, match="fp16 needs CUDA.*bf16 or off"):
        resolve_amp("fp16", "cpu")
    assert AMP_SETTINGS == ("off", "auto", "fp16", "bf16")
    for bad in ("fp32", "on", "", None, 1):
        with pytest.raises(ValueError, match=r"solver\.amp must be one of off, auto, fp16, bf16; got"):
            amp_setting(bad, "solver.amp")  # type: ignore[arg-type]


@pytest.mark.parametrize("old, new", [(True, "auto"), (False, "off"), ("true", "auto"), ("False", "off")])
def test_bools_are_read_with_a_future_warning(old, new):
    with pytest.warns(FutureWarning, match=f"child.amp: a true/false value is deprecated, read as '{new}'"):
        assert amp_setting(old, "child.amp") == new
    with pytest.warns(FutureWarning):
        assert resolve_amp(old, "cuda") == (torch.float16 if new == "auto" else None)


def test_every_config_checks_its_amp_key_with_the_core(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("solver:\n  amp: true\n")  # a config written before amp took four values
    with pytest.warns(FutureWarning, match="solver.amp"):
        assert load_config(TrainConfig(), recipe).solver.amp == "auto"
    with pytest.warns(FutureWarning):  # YAML reads an unquoted off as false: the same setting
        assert load_config(TrainConfig(), None, ["solver.amp", "false"]).solver.amp == "off"
    assert load_config(TrainConfig(), None, ["solver.amp", "bf16"]).solver.amp == "bf16"
    with pytest.raises(ConfigError, match="solver.amp must be one of off, auto, fp16, bf16"):
        load_config(TrainConfig(), None, ["solver.amp", "half"])

    det = load_config(DetConfig(), None, ["solver.amp", "true"])
    with pytest.warns(FutureWarning, match="solver.amp"):
        det.validate()
    assert det.solver.amp == "auto"
    det.solver.amp = "fp8"
    with pytest.raises(ValueError, match="solver.amp must be one of"):
        det.validate()

    child = ChildConfig(amp=False)  # type: ignore[arg-type]
    with pytest.warns(FutureWarning, match="child.amp"):
        child.validate()
    assert child.amp == "off" and ChildConfig().amp == "auto"


def test_clipping_clips_and_reports_the_norm_before_clipping():
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = TrainStep(optimizer, device="cpu", grad_clip=0.5).run(mse(model))
    grads = [p.grad for p in model.parameters()]
    assert metrics["grad_norm"] > 100  # far above the bound: the clip acts
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])) == pytest.approx(0.5, rel=1e-4)
    for p, old, g in zip(model.parameters(), before, grads):  # the update used the clipped gradient
        assert torch.allclose(p.detach(), old - 0.1 * g)

    free = linear()
    metrics_free = TrainStep(torch.optim.SGD(free.parameters(), lr=0.1), device="cpu").run(mse(free))
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in free.parameters()]))
    assert metrics_free["grad_norm"] == pytest.approx(float(norm)) == pytest.approx(metrics["grad_norm"])


def test_a_nan_loss_is_skipped_counted_and_leaves_the_weights():
    model = linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = TrainStep(optimizer, device="cpu", max_skips=2)
    step.run(mse(model))  # one good step: gradients and momentum exist
    weights = [p.detach().clone() for p in model.parameters()]
    for count in (1, 2):
        metrics = step.run(mse(model, float("nan")))
        assert metrics["skipped"] == 1 and math.isnan(metrics["loss"]) and math.isnan(metrics["grad_norm"])
        assert step.skips_in_a_row == count == step.skipped_total
        assert all(p.grad is None for p in model.parameters())  # cleared, so no stale gradient is applied later
        assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    with pytest.raises(NonFiniteLossError, match="loss is inf") as err:  # the third in a row is one too many
        step.run(mse(model, float("inf")))
    assert err.value.loss == math.inf and isinstance(err.value, FloatingPointError)
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
    assert step.run(mse(model))["skipped"] == 0 and step.skips_in_a_row == 0 and step.skipped_total == 3

    with pytest.raises(NonFiniteLossError):  # the default: the first non-finite loss stops
        TrainStep(optimizer, device="cpu").run(mse(model, float("nan")))
    forever = TrainStep(optimizer, device="cpu", max_skips=None)
    assert [forever.run(mse(model, float("nan")))["skipped"] for _ in range(5)] == [1] * 5


def test_named_losses_are_summed_and_the_reduced_values_decide():
    model = linear()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.0), device="cpu", reduce=lambda v: v * 2)
    loss = mse(model)
    metrics = step.run(lambda: {"a": loss(), "b": 3 * loss()})
    assert metrics["a"] * 3 == pytest.approx(metrics["b"]) and metrics["loss"] == pytest.approx(4 * metrics["a"])
    assert metrics["a"] == pytest.approx(2 * float(loss().detach()))  # the values are reduced ones
    # another process saw a NaN: the reduced mean is NaN, so this process skips too
    other = TrainStep(step.optimizer, device="cpu", reduce=lambda v: v + float("nan"), max_skips=None)
    assert other.run(loss)["skipped"] == 1 and model.weight.grad is None


class Recorder(StepHook):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def before_step(self, step: TrainStep) -> None:
        self.log.append(f"{self.name}.before")

    def after_backward(self, step: TrainStep) -> None:
        assert all(p.grad is not None for p in step.params)
        self.log.append(f"{self.name}.backward")

    def after_step(self, step: TrainStep, metrics: dict[str, float]) -> None:
        self.log.append(f"{self.name}.after{'(skipped)' if metrics['skipped'] else ''}")


def test_hooks_run_in_order_and_the_scheduler_hook_steps():
    model, log = linear(), []
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 ** i)
    step = TrainStep(optimizer, device="cpu", max_skips=1,
                     hooks=[Recorder("a", log), SchedulerStep(scheduler), Recorder("b", log)])
    assert step.run(mse(model))["lr"] == 1.0
    assert log == ["a.before", "b.before", "a.backward", "b.backward", "a.after", "b.after"]
    log.clear()
    assert step.run(mse(model, float("nan")))["lr"] == 0.5
    assert log == ["a.before", "b.before", "a.after(skipped)", "b.after(skipped)"]
    assert optimizer.param_groups[0]["lr"] == 0.25


def test_bf16_autocast_on_cpu_trains_without_a_scaler():
    model = linear()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=1e-3), device="cpu", amp="bf16")
    seen = []

    def loss() -> torch.Tensor:
        out = model(torch.ones(8, 4))
        seen.append(out.dtype)
        return ((out.float() - 100.0) ** 2).mean()
    before = model.weight.detach().clone()
    metrics = step.run(loss)
    assert seen == [torch.bfloat16] and not step.scaler.is_enabled()
    assert metrics["skipped"] == 0 and math.isfinite(metrics["loss"]) and not torch.equal(model.weight, before)
    with step.autocast():
        assert model(torch.ones(1, 4)).dtype == torch.bfloat16
    with TrainStep(step.optimizer, device="cpu").autocast():
        assert model(torch.ones(1, 4)).dtype == torch.float32


def test_the_scaler_path_clips_and_reports_unscaled_gradients():
    """fp16's loss scaling, with torch's CPU GradScaler standing in for CUDA's (fp16 itself needs CUDA here)."""
    model, plain = linear(), linear()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", grad_clip=0.5)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    reference = TrainStep(torch.optim.SGD(plain.parameters(), lr=0.1), device="cpu", grad_clip=0.5)
    metrics, expected = step.run(mse(model)), reference.run(mse(plain))
    assert metrics["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5)
    for p, q in zip(model.parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad) and torch.allclose(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_scales_the_loss_and_still_clips_the_true_norm():
    model = linear().cuda()
    step = TrainStep(torch.optim.SGD(model.parameters(), lr=0.1), device="cuda", amp="auto", grad_clip=0.5)
    x, y = torch.ones(8, 4, device="cuda"), torch.full((8, 1), 100.0, device="cuda")
    metrics = step.run(lambda: ((model(x).float() - y) ** 2).mean())
    assert step.scaler.is_enabled() and step.amp_dtype == torch.float16 and metrics["grad_norm"] > 100
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert float(norm) == pytest.approx(0.5, rel=1e-3)  # unscaled before clipping
