"""Gradient accumulation (recipe ``accum_steps`` / ``global_batch``, ``train --accum-steps``) and
the plan printed before a run (``train --plan``), on tiny generated data. The DDP and SIGKILL
tests are slow-marked."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modernize.cli import main as cli_main
from modernize.errors import ConfigError
from modernize.recipe import Recipe
from modernize.train import prepare_run, train_roadmap
from tests.conftest import TINY_PROXY, write_recipe
from tests.test_train import REPO, result

STEP = "separate_downsampling"  # a LayerNorm step: no BatchNorm, so micro-batches change nothing
JOB = Path(STEP) / "seed0"


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """One torch thread: on a shared 2-core machine two OpenMP threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / JOB / "last.pt", weights_only=False)["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _run(tmp: Path, out: str, *, n: int = 128, accum_steps: int | None = None, **kw: object) -> Path:
    return train_roadmap(None, data=f"synthetic:{n}", recipe=write_recipe(tmp, out, **kw), seeds=[0], out=tmp / out,
                         steps=[STEP], device="cpu", proxy=TINY_PROXY, progress=False, accum_steps=accum_steps)


# --- recipe keys -------------------------------------------------------------------------------------

def test_recipe_accumulation_keys_are_checked() -> None:
    assert Recipe(batch_size=8, accum_steps=4).accum_steps == 4
    with pytest.raises(ConfigError, match="'accum_steps'"):
        Recipe(accum_steps=0)
    with pytest.raises(ConfigError, match="'global_batch'.*multiple of batch_size"):
        Recipe(batch_size=128, global_batch=1000)
    with pytest.raises(ConfigError, match="'global_batch'.*not both"):
        Recipe(batch_size=8, global_batch=64, accum_steps=2)


def test_global_batch_that_does_not_divide_is_refused_in_one_line(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, batch_size=16, global_batch=48)
    cfg = prepare_run(None, data="synthetic:64", recipe=recipe, seeds=[0], out=tmp_path / "r", device="cpu")
    assert cfg.global_batch == 48  # one process: accum 3
    from modernize.train.batches import batching

    with pytest.raises(ConfigError, match=r"global_batch 48 is not a multiple of batch_size 16 x 2 process\(es\) = 32"):
        batching(cfg.recipe, 2)
    assert batching(cfg.recipe, 3).accum == 1


# --- batch 8 x accum 4 == batch 32 --------------------------------------------------------------------

def test_batch_8_accum_4_equals_batch_32(tmp_path: Path) -> None:
    """LayerNorm step, drop path 0, no mixup: the same images per update with the same per-image
    augmentation (pad-crop, flip, erasing drawn for the update's share at once), the gradient of
    four micro-batches each scaled by 1/4 equals that of the 32 images; only float order differs."""
    aug = dict(crop="pad", hflip=True, random_erasing=0.25, lr_batch=32)
    big = _run(tmp_path, "big", batch_size=32, **aug)
    acc = _run(tmp_path, "acc", batch_size=8, accum_steps=4, **aug)
    diff = _max_diff(_weights(big), _weights(acc))
    print(f"batch 8 x accum 4 vs batch 32, 4 updates: max |weight diff| = {diff:.2e}")
    assert diff < 1e-5
    ck = torch.load(acc / JOB / "last.pt", weights_only=False)
    assert ck["scheduler"]["last_epoch"] == 128 // 32  # one scheduler step per update
    cfg = json.loads((acc / JOB / "config.json").read_text())
    assert (cfg["per_process_batch"], cfg["global_batch"]) == (8, 32)
    assert cfg["fingerprint_parts"]["global_batch"] == 32
    la, lb = ((o / JOB / "log.csv").read_text().splitlines()[1].split(",") for o in (big, acc))
    assert abs(float(la[1]) - float(lb[1])) < 1e-4  # the logged train loss: the same mean


def test_accum_flag_and_global_batch_key_train_the_same_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--accum-steps 2`` and ``global_batch = 32`` at batch 16 are one configuration: the second
    run finds the first's finished job and skips it (same fingerprint)."""
    recipe = write_recipe(tmp_path, "acc", batch_size=16)
    assert cli_main(["train", "--plan", "--data", "synthetic:64", "--recipe", str(recipe), "--steps", STEP,
                     "--out", str(tmp_path / "run"), "--device", "cpu", "--accum-steps", "2", "--width", "0.125",
                     "--depth", "0.34", "--low-res", "2"]) == 0
    assert f"{STEP} seed 0: 1 process(es) x batch 16 x accum 2 = 32, 2 steps, 64 images" in capsys.readouterr().out
    _run(tmp_path, "run", n=64, batch_size=16, accum_steps=2)
    out = capsys.readouterr().out
    assert "1 process(es) x batch 16 x accum 2 = global batch 32" in out  # the start line
    assert f"{STEP} seed 0: 1 process(es) x batch 16 x accum 2 = 32, 2 steps, 64 images" in out  # its plan
    assert result(tmp_path / "run", STEP)["status"] == "done"
    _run(tmp_path, "run", n=64, batch_size=16, global_batch=32)
    assert "done already, skipped" in capsys.readouterr().out


# --- DDP: batch 4 x 2 processes x accum 2 == 1 process at 16, one all-reduce per update -----------------

def _ddp_accum_worker(rank: int, world: int, port: int, out: str, recipe: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    import modernize.train.job as J

    real, calls, forwards = J._wrap, [0], [0]

    def wrap(model: torch.nn.Module, cfg: object, rec: object) -> torch.nn.Module:
        m = real(model, cfg, rec)  # type: ignore[arg-type]
        m.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))

        def count(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks real (not string) annotations
            calls[0] += 1
            return allreduce_hook(None, bucket)  # type: ignore[arg-type]

        m.register_comm_hook(None, count)  # type: ignore[operator]
        return m

    J._wrap = wrap  # type: ignore[assignment]
    dist.init_process_group("gloo")  # the caller's own group: the run uses it and leaves it joined
    train_roadmap(None, data="synthetic:128", recipe=recipe, seeds=[0], out=Path(out), steps=[STEP], device="cpu",
                  proxy=TINY_PROXY, progress=False)
    Path(out, f"hook{rank}.json").write_text(json.dumps({"allreduce": calls[0], "forwards": forwards[0]}))
    assert dist.is_initialized(), "train_roadmap left a process group it did not join"
    dist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_batch_4_x_2_processes_x_accum_2_equals_one_process_at_16(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    ddp = write_recipe(tmp_path, "ddp", epochs=2, batch_size=4, accum_steps=2, lr_batch=16)
    one = write_recipe(tmp_path, "one", epochs=2, batch_size=16, lr_batch=16)
    mp.spawn(_ddp_accum_worker, args=(2, _port(), str(tmp_path / "ddp"), str(ddp)), nprocs=2, join=True)
    torch.set_num_threads(1)
    train_roadmap(None, data="synthetic:128", recipe=one, seeds=[0], out=tmp_path / "single", steps=[STEP],
                  device="cpu", proxy=TINY_PROXY, progress=False)
    meta = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert (meta["world_size"], meta["per_process_batch"], meta["global_batch"]) == (2, 4, 16)
    diff = _max_diff(_weights(tmp_path / "ddp"), _weights(tmp_path / "single"))
    print(f"DDP 4 x 2 x accum 2 vs 1 x 16 after 16 updates: max |weight diff| = {diff:.2e}")
    assert diff < 1e-5
    assert result(tmp_path / "ddp", STEP)["top1"] == result(tmp_path / "single", STEP)["top1"]
    updates = 2 * 128 // 16
    for rank in (0, 1):
        hook = json.loads((tmp_path / "ddp" / f"hook{rank}.json").read_text())
        # the tiny model's gradients fit one DDP bucket: one hook call = one all-reduce
        assert hook["forwards"] == 2 * updates and hook["allreduce"] == updates, hook


# --- SIGKILL in the middle of an accumulation ---------------------------------------------------------

KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from modernize.proxy import ProxyScale
    from modernize.train import train_roadmap
    kill_at = int(sys.argv[2])
    if kill_at:  # SIGKILL at this training micro-batch's loss (the evaluation uses the functional loss)
        real, calls = torch.nn.CrossEntropyLoss.forward, [0]
        def forward(self, *a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *a, **k)
        torch.nn.CrossEntropyLoss.forward = forward
    train_roadmap(None, data="synthetic:96", recipe=sys.argv[3], seeds=[0], out=Path(sys.argv[1]),
                  steps=[{step!r}], device="cpu", ckpt_every=2, progress=False,
                  proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
""")


@pytest.mark.slow
def test_sigkill_mid_accumulation_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    """Every augmentation on, accum 2: killed between the two micro-batches of an update (after
    the checkpoint of update 4 of epoch 2), the rerun resumes at that update boundary and ends
    with the weights, log and scores of a run never stopped."""
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), step=STEP))
    recipe = write_recipe(tmp_path, epochs=2, batch_size=4, accum_steps=2, lr_batch=8, crop="pad", hflip=True,
                          mixup=0.8, cutmix=1.0, drop_path=0.1, random_erasing=0.25, label_smoothing=0.1,
                          warmup_epochs=0.5)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def go(out: str, kill_at: int) -> int:
        return subprocess.run([sys.executable, str(script), str(tmp_path / out), str(kill_at), str(recipe)],
                              env=env, capture_output=True, timeout=180).returncode

    assert go("straight", 0) == 0
    # 12 updates of 2 micro-batches per epoch: micro-batch 24 + 12 is the second half of update 6
    # of epoch 2; the last checkpoint was at update 4.
    assert go("killed", 24 + 12) == -signal.SIGKILL
    ck = torch.load(tmp_path / "killed" / JOB / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["iter"]) == (1, 4)
    assert go("killed", 0) == 0
    a, b = (result(tmp_path / o, STEP) for o in ("straight", "killed"))
    assert b["status"] == "done" and (a["top1"], a["top5"], a["best_top1"]) == (b["top1"], b["top5"], b["best_top1"])
    wa, wb = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    strip = lambda o: [r.split(",")[:6] for r in (tmp_path / o / JOB / "log.csv").read_text().splitlines()]  # noqa: E731
    assert strip("straight") == strip("killed")


# --- the plan -----------------------------------------------------------------------------------------

def _rng() -> tuple[torch.Tensor, object, object]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def test_plan_prints_per_job_lines_and_total_writes_nothing_keeps_rng(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, batch_size=8, accum_steps=2, epochs=2)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    before = _rng()
    out = tmp_path / "run"
    code = cli_main(["train", "--plan", "--data", "synthetic:64", "--recipe", str(recipe), "--steps", "resnet50",
                     STEP, "--seeds", "0", "1", "--out", str(out), "--device", "cpu", "--width", "0.125",
                     "--depth", "0.34", "--low-res", "2"])
    assert code == 0
    after = _rng()
    assert torch.equal(before[0], after[0])
    assert all(np.array_equal(x, y) for x, y in zip(before[1][1:2], after[1][1:2], strict=True))
    assert before[2] == after[2]
    assert not out.exists()
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.startswith("  ")]
    jobs = [ln for ln in lines if "seed" in ln]
    assert len(jobs) == 4, text  # 2 steps x 2 seeds
    job = next(ln for ln in jobs if STEP in ln and "seed 1" in ln)
    # 64 images, effective batch 16: 4 updates per epoch, 2 epochs
    assert "batch 8 x accum 2 = 16" in job and "8 steps" in job and "128 images" in job and "MMACs" in job, job
    assert "total: 4 job(s)" in text and "est." in text, text


def test_a_cpu_run_of_hours_warns_in_one_line(tmp_path: Path) -> None:
    from modernize.roadmap import load_roadmap
    from modernize.train.batches import Batching
    from modernize.train.plan import PlannedStep, hours_warning, plan_lines

    cfg = prepare_run(None, data="synthetic:64", recipe=write_recipe(tmp_path), seeds=[0, 1], out=tmp_path / "r",
                      device="cpu")
    step = load_roadmap()[STEP]
    plans = [PlannedStep(step, cfg.recipe, [0, 1], Batching(8, 1, 4), updates=1000, gmacs=4.5, secs=2000.0)]
    lines, wall = plan_lines(cfg, plans, workers=2)
    assert wall == 2000.0
    assert lines[-1].endswith("est. 66.7 min one after another, 33.3 min with 2 workers side by side")
    assert "32,000 images" in lines[1] and "4,500.0 MMACs/image" in lines[1]
    assert hours_warning(cfg, wall) is None
    warning = hours_warning(cfg, 5 * 3600.0)
    assert warning is not None and "5.0 h on the CPU" in warning and "\n" not in warning
