"""One device resolver, one precision mapping, one training step for train, --plan and bench."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from modernize.bench import Runner
from modernize.device import AUTOCAST_DTYPES, autocast, precision_label, resolve_device
from modernize.errors import ConfigError
from modernize.recipe import Recipe
from modernize.spec import base_spec
from modernize.train import plan


def test_resolve_device_refuses_in_one_line() -> None:
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="--device 'gpu': expected cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda:1: CUDA is not available"):
            resolve_device("cuda:1")


def test_precision_mapping_is_fp32_on_cpu() -> None:
    assert set(AUTOCAST_DTYPES) == set(typing.get_args(typing.get_type_hints(Recipe)["precision"]))
    for precision in AUTOCAST_DTYPES:
        with autocast("cpu", precision):
            assert not torch.is_autocast_enabled("cpu")
        assert precision_label("cpu", precision) == "fp32"
    assert precision_label("cuda", "bf16") == "bf16-autocast"
    assert precision_label("cuda", "fp32") == "fp32"


def _tiny_spec():
    return base_spec("resnet50").replace(dims=(8, 16, 16, 16), stem_width=8, depths=(1, 1, 1, 1), num_classes=10,
                                   in_chans=1)


def test_plan_times_the_loops_own_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate runs the recipe's whole update: schedule and EMA move (a hand-written
    forward/backward/step, as the plan had before, moves neither)."""
    built = []
    real = plan.make_trainer
    monkeypatch.setattr(plan, "make_trainer", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    recipe = Recipe(resolution=32, batch_size=4, ema=True, mixup=0.8, epochs=1, warmup_epochs=0.0, crop="pad")
    before = torch.random.get_rng_state()
    train_s, eval_s = plan.time_per_image(_tiny_spec(), recipe, 4, "cpu", gmacs=0.01)
    assert train_s > 0 and eval_s > 0
    assert torch.equal(before, torch.random.get_rng_state())
    t = built[0]
    assert t.sched.last_epoch == 3  # warm-up + 2 timed updates
    assert t.ema is not None and int(t.ema.n_averaged) == 3


def test_bench_times_the_loops_own_update() -> None:
    runner = Runner(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)), torch.device("cpu"),
                    batch=4, resolution=8, num_classes=10)
    assert runner.trainer.recipe == dataclasses.replace(runner.trainer.recipe, name="bench")
    loss = runner.train_step()
    assert torch.isfinite(loss)
    assert runner.trainer.sched.last_epoch == 1 and runner.trainer.opt.state
    assert runner.dtype == "fp32"
