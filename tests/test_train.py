"""The training engine on tiny generated data: recipes, every recipe feature, run directory,
resume after SIGKILL, DDP vs one process, failures. Each test takes seconds."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modernize.cli import main as cli_main
from modernize.data import BatchAugment, DataSpec, data_key, load_data
from modernize.errors import ConfigError
from modernize.model import build_model
from modernize.proxy import CPU_PROXY, low_res, scale
from modernize.recipe import Augmentation, DataPart, Recipe, builtin_recipes, load_recipe
from modernize.roadmap import load_roadmap
from modernize.train import LOG_COLUMNS, make_optimizer, make_scheduler, param_groups, train_roadmap
from tests.conftest import TINY, TINY_PROXY, write_recipe

REPO = Path(__file__).resolve().parent.parent


def tiny_run(tmp: Path, out: str = "run", steps: tuple[str, ...] = ("separate_downsampling",), n: int = 64,
             **kw: object) -> Path:
    return train_roadmap(None, data=f"synthetic:{n}", recipe=write_recipe(tmp, **kw), seeds=[0], out=tmp / out,
                         steps=list(steps), device="cpu", proxy=TINY_PROXY, progress=False)


def result(run: Path, step: str, seed: int = 0) -> dict:
    return json.loads((run / step / f"seed{seed}" / "result.json").read_text())


# --- recipes -----------------------------------------------------------------------------------

def test_builtin_recipes_load_and_paper_values() -> None:
    assert {"paper", "quick", "cifar100_gpu", "resnet_original"} <= set(builtin_recipes())
    for name in builtin_recipes():
        load_recipe(name)
    p = load_recipe("paper")
    assert ((p.optimizer, p.lr, p.lr_batch, p.weight_decay, p.epochs, p.warmup_epochs)
            == ("adamw", 4e-3, 4096, 0.05, 300, 20))
    assert ((p.mixup, p.cutmix, p.random_erasing, p.label_smoothing, p.drop_path, p.ema)
            == (0.8, 1.0, 0.25, 0.1, 0.1, False))
    assert p.scaled_lr(1024) == pytest.approx(1e-3)
    r = load_recipe("resnet_original")
    assert (r.optimizer, r.momentum, r.weight_decay, r.epochs, r.decay_epochs) == ("sgd", 0.9, 1e-4, 90, (30, 60, 80))
    assert r.scaled_lr(256) == pytest.approx(0.1)


def test_recipe_unknown_key_names_file_and_valid_keys(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "bad", lr_rate=0.1)
    with pytest.raises(ConfigError, match=r"bad\.toml.*unknown recipe key.*'lr_rate'.*valid: .*weight_decay"):
        load_recipe(path)


@pytest.mark.parametrize("key, value, match", [
    ("lr", -1.0, "'lr'"), ("optimizer", "adam", "'optimizer'"), ("epochs", 0, "'epochs'"),
    ("random_erasing", 2.0, "'random_erasing'"), ("warmup_epochs", 5, "'warmup_epochs'"),
    ("betas", [0.9], "'betas'"), ("schedule", "step", "'decay_epochs'"),
])
def test_recipe_bad_values(tmp_path: Path, key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_recipe(write_recipe(tmp_path, **{key: value}))


def test_unknown_recipe_name_lists_builtins() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*paper"):
        load_recipe("nope")


@pytest.mark.parametrize("name", ["quick", "study"])
def test_cpu_recipes_give_step_zero_the_same_budget(name: str) -> None:
    """Step 0's substitute recipe (the original ResNet one) may change the optimiser, never
    the budget: same images, epochs, batch, resolution and test set as every other step."""
    recipe = load_recipe(name)
    sub = recipe.for_step("resnet_original")
    for key in ("train_images", "val_images", "epochs", "batch_size", "resolution", "resize", "precise_bn_batches"):
        assert getattr(sub, key) == getattr(recipe, key), key
    assert sub.optimizer == "sgd" and recipe.optimizer == "adamw"


def test_step_override_and_substitute() -> None:
    quick = load_recipe("quick")
    sub = quick.for_step("resnet_original")
    assert sub.optimizer == "sgd" and sub.schedule == "step" and sub.epochs == quick.epochs
    assert sub.decay_epochs[0] / sub.epochs == pytest.approx(30 / 90, abs=1e-3)
    paper = load_recipe("paper")
    assert paper.for_step("resnet_original") == load_recipe("resnet_original")  # no substitute: as written
    assert paper.for_step(None) is paper
    with pytest.raises(ConfigError, match="substitute.resnet_original.*'bogus'"):
        Recipe(substitute={"resnet_original": {"bogus": 1}})


# --- schedule and optimiser -----------------------------------------------------------------------

def _lrs(recipe: Recipe, ipe: int) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = make_scheduler(opt, recipe, ipe)
    out = []
    for _ in range(recipe.epochs * ipe):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_per_iteration() -> None:
    r = Recipe(lr=1.0, epochs=10, warmup_epochs=2, warmup_start_factor=0.1, min_lr=0.0)
    lrs = _lrs(r, ipe=5)  # 10 warm-up iterations, 40 cosine iterations
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 5 / 10)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[30] == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_step_decay() -> None:
    r = Recipe(lr=0.1, epochs=9, warmup_epochs=0, schedule="step", decay_epochs=(3, 6), decay_factor=0.1)
    lrs = _lrs(r, ipe=4)
    assert lrs[11] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.01)
    assert lrs[23] == pytest.approx(0.01) and lrs[24] == pytest.approx(0.001)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = build_model(CPU_PROXY.apply(load_roadmap()[-1].spec))
    groups = param_groups(model, 0.05, decay_all=False)
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim <= 1 for p in groups[1]["params"])
    no_decay = {id(p) for p in groups[1]["params"]}
    named = dict(model.named_parameters())
    assert id(named["stem.norm.weight"]) in no_decay and id(named["head.fc.bias"]) in no_decay
    assert id(named["stages.0.blocks.0.gamma"]) in no_decay
    assert len(param_groups(model, 1e-4, decay_all=True)) == 1
    opt = make_optimizer(model, Recipe(optimizer="sgd", momentum=0.9), lr=0.1)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9


# --- augmentation ------------------------------------------------------------------------------------

def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def _aug(**kw: object) -> BatchAugment:
    recipe = Recipe(**(TINY | kw))
    return BatchAugment(recipe.part(DataPart), recipe.part(Augmentation), num_classes=10, mean=(0.5,) * 3,
                        std=(0.25,) * 3)


@pytest.mark.parametrize("key", ["mixup", "cutmix"])
def test_mixup_cutmix_soft_targets(key: str) -> None:
    torch.manual_seed(0)
    x, y = _batch()
    xa, ya = _aug(**{key: 1.0})(x, y)
    assert ya.shape == (16, 10) and torch.allclose(ya.sum(1), torch.ones(16))
    assert (ya.max(1).values < 1).any()  # mixed, not one-hot
    both = _aug(mixup=0.8, cutmix=1.0)
    assert type(both.mix).__name__ == "RandomChoice"


def test_randaugment_and_crop_change_images_per_image() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    plain, _ = _aug()(x, y)
    ra, _ = _aug(randaugment_ops=2, randaugment_magnitude=9)(x, y)
    assert not torch.allclose(plain, ra)
    torch.manual_seed(1)
    cropped, _ = _aug(crop="pad", hflip=True)(x, y)
    assert cropped.shape == plain.shape and not torch.allclose(cropped, plain)
    rrc, _ = _aug(crop="rrc")(x, y)
    assert rrc.shape == plain.shape and not torch.allclose(rrc, plain)
    # per image: one image repeated through the batch comes out cropped differently
    same = x[:1].expand_as(x).contiguous()
    for kw in (dict(crop="rrc"), dict(crop="pad", hflip=True)):
        torch.manual_seed(2)
        out, _ = _aug(**kw)(same, y)
        assert len({out[i].numpy().tobytes() for i in range(len(out))}) > len(out) // 2, kw


def test_random_erasing() -> None:
    torch.manual_seed(0)
    x, y = _batch()
    x = torch.full_like(x, 200)
    out, _ = _aug(random_erasing=1.0)(x, y)
    assert all((img == 0).any() for img in out)  # every image has an erased (zeroed) box


def test_label_smoothing_and_ema_and_drop_path_in_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.ops import StochasticDepth

    import modernize.train.job as T

    models: list[nn.Module] = []
    calls: list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def recording_build(*a: object, **kw: object) -> nn.Module:
        models.append(build_model(*a, **kw))
        return models[-1]

    class RecordingLoss(nn.CrossEntropyLoss):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = super().forward(logits, target)
            calls.append((self.label_smoothing, logits.detach(), target.detach(), loss.detach()))
            return loss

    monkeypatch.setattr(T, "build_model", recording_build)
    monkeypatch.setattr(T.nn, "CrossEntropyLoss", RecordingLoss)
    run = tiny_run(tmp_path, epochs=2, label_smoothing=0.1, ema=True, ema_decay=0.5, drop_path=0.2)
    # label smoothing: the training loss is the smoothed cross-entropy, not the plain one
    smoothed = [c for c in calls if c[0] == 0.1]
    assert smoothed, "no loss computed with label_smoothing=0.1"
    _, logits, target, loss = smoothed[0]
    assert torch.allclose(loss, nn.functional.cross_entropy(logits, target, label_smoothing=0.1))
    assert not torch.allclose(loss, nn.functional.cross_entropy(logits, target))
    # drop path: the trained model drops residual branches (rates rising to 0.2), at random in training only
    rates = [m.p for model in models for m in model.modules() if isinstance(m, StochasticDepth)]
    assert rates and max(rates) == pytest.approx(0.2)
    model, x = models[0], torch.randn(4, 3, 16, 16)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    ck = torch.load(run / "separate_downsampling" / "seed0" / "last.pt", weights_only=False)
    assert ck["ema"] is not None and int(ck["ema"]["n_averaged"]) == 2 * (64 // 16)
    model_w = ck["model"]["stem.conv.weight"]
    ema_w = ck["ema"]["module.stem.conv.weight"]
    assert not torch.equal(model_w, ema_w)
    assert ck["recipe"]["label_smoothing"] == 0.1
    cfg = json.loads((run / "separate_downsampling" / "seed0" / "config.json").read_text())
    assert cfg["spec"]["drop_path"] == 0.2
    assert result(run, "separate_downsampling")["status"] == "done"


def test_gradient_clipping_bounds_the_update(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, n=20, optimizer="sgd", momentum=0.0, weight_decay=0.0, lr=1.0, grad_clip=1e-4)
    cfg = json.loads((run / "separate_downsampling" / "seed0" / "config.json").read_text())
    from modernize.spec import ArchSpec
    from modernize.train.seeds import seed_everything

    seed_everything(0)
    init = build_model(ArchSpec.from_dict(cfg["spec"])).state_dict()
    final = torch.load(run / "separate_downsampling" / "seed0" / "last.pt", weights_only=False)["model"]
    delta = torch.cat([(final[k] - init[k]).flatten() for k in init if init[k].is_floating_point()])
    assert 0 < delta.norm().item() <= 1e-4 * 1.0001  # one SGD step of lr 1 on a clipped gradient


# --- run directory, resume, failures -------------------------------------------------------------------

def test_run_dir_layout(tmp_path: Path) -> None:
    run = tiny_run(tmp_path, steps=("resnet50", "separate_downsampling"))
    meta = json.loads((run / "run.json").read_text())
    assert meta["roadmap"]["name"] == "resnet50_to_convnext_t" and meta["recipe"]["name"] == "tiny"
    assert meta["proxy"]["stem_stride"] == 2 and meta["world_size"] == 1 and meta["config_hash"]
    for step in ("resnet50", "separate_downsampling"):
        d = run / step / "seed0"
        assert (d / "last.pt").is_file() and (d / "config.json").is_file()
        assert (d / "log.csv").read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
        r = result(run, step)
        assert r["status"] == "done" and 0 <= r["top1"] <= 100 and r["top5"] >= r["top1"]
        assert r["epochs_done"] == r["epochs"] == 1 and r["gmacs"] > 0 and r["params_m"] > 0
        assert r["resolution"] == 16 and r["failed_epoch"] is None


def test_resume_skips_done_and_refuses_a_different_config(tmp_path: Path) -> None:
    run = tiny_run(tmp_path)
    before = (run / "separate_downsampling" / "seed0" / "result.json").stat().st_mtime_ns
    tiny_run(tmp_path)  # same command: nothing to do
    assert (run / "separate_downsampling" / "seed0" / "result.json").stat().st_mtime_ns == before
    # the job's own fingerprint is checked first (before run.json): it names the job
    differs = r"separate_downsampling/seed0: trained with a different configuration.*recipe\.lr"
    with pytest.raises(ConfigError, match=differs):
        tiny_run(tmp_path, lr=1e-3)


def test_nan_loss_marks_failed_and_chain_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modernize.train.job as T

    real = T.build_model

    def poisoned(spec):  # the ResNet step diverges: its stem output becomes NaN
        model = real(spec)
        if spec.stem == "conv_pool":
            model.stem.register_forward_hook(lambda m, i, o: o * float("nan"))
        return model

    monkeypatch.setattr(T, "build_model", poisoned)
    run = tiny_run(tmp_path, steps=("resnet50", "separate_downsampling"))
    bad = result(run, "resnet50")
    assert bad["status"] == "failed" and bad["failed_epoch"] == 1 and "non-finite" in bad["reason"]
    assert result(run, "separate_downsampling")["status"] == "done"


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from pathlib import Path
    from modernize.proxy import ProxyScale
    from modernize.train import train_roadmap
    kill_at = int(sys.argv[2])
    if kill_at:
        real, calls = torch.optim.AdamW.step, [0]
        def step(self, *a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *a, **k)
        torch.optim.AdamW.step = step
    if __name__ == "__main__":  # spawned workers re-import this file
        train_roadmap(None, data={data!r}, recipe=sys.argv[3], seeds={seeds!r}, out=Path(sys.argv[1]),
                      steps={steps!r}, device="cpu", ckpt_every=2, progress=False,
                      proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2),
                      workers=int(sys.argv[4]) if len(sys.argv) > 4 else 1, threads=1)
""")
"""A training process for the kill/resume tests: argv = RUN_DIR, kill_at (SIGKILL itself at that
AdamW step; 0 = never), recipe, [workers]."""


@pytest.mark.slow
@pytest.mark.parametrize("data", ["synthetic:96", "imagefolder"])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path: Path, data: str) -> None:
    """Killed mid-epoch and rerun: the same weights, log and scores as a run never stopped. The
    image folder streams through DataLoader workers that apply RandomResizedCrop, flip and
    RandAugment per image: their randomness must come from the job, epoch and position (the
    sampler's ``(index, seed)`` pairs), not from whatever state the workers were started in."""
    if data == "imagefolder":
        from tests.folder_fixture import export_fashion

        data = f"imagefolder:{export_fashion(tmp_path / 'folder', train=96, val=40)}"
        aug: dict[str, object] = dict(crop="rrc", resolution=16, randaugment_ops=2)
    else:
        aug = dict(crop="pad")
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(repo=str(REPO), seeds=[0], steps=["separate_downsampling"], data=data))
    recipe = write_recipe(tmp_path, epochs=2, hflip=True, mixup=0.8, cutmix=1.0, drop_path=0.1,
                          random_erasing=0.25, label_smoothing=0.1, warmup_epochs=0.5, **aug)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def go(out: str, kill_at: int) -> int:
        return subprocess.run([sys.executable, str(script), str(tmp_path / out), str(kill_at), str(recipe)],
                              env=env, capture_output=True, timeout=120).returncode

    assert go("straight", 0) == 0
    # 6 iterations per epoch; checkpoints every 2: killed in epoch 2 at iteration 10, after the
    # checkpoint of iteration 8 (mid-epoch), so the restart replays iteration 9 onwards.
    assert go("killed", 10) == -9
    killed = result(tmp_path / "killed", "separate_downsampling")
    assert killed["status"] == "running" and killed["epochs_done"] == 1
    assert go("killed", 0) == 0
    a, b = (result(tmp_path / o, "separate_downsampling") for o in ("straight", "killed"))
    assert b["status"] == "done" and (a["top1"], a["top5"], a["best_top1"]) == (b["top1"], b["top5"], b["best_top1"])
    wa, wb = (torch.load(tmp_path / o / "separate_downsampling" / "seed0" / "last.pt", weights_only=False)
              for o in ("straight", "killed"))
    assert wa["model"].keys() == wb["model"].keys()
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    la, lb = ((tmp_path / o / "separate_downsampling" / "seed0" / "log.csv").read_text().splitlines()
              for o in ("straight", "killed"))
    strip = lambda rows: [r.split(",")[:6] for r in rows]  # noqa: E731 (timings differ)
    assert strip(la) == strip(lb)


def _ddp_worker(rank: int, world: int, port: int, out: str, recipe: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train_roadmap(None, data="synthetic:128", recipe=recipe, seeds=[0], out=Path(out),
                  steps=["separate_downsampling"], device="cpu", proxy=TINY_PROXY, progress=False)
    import torch.distributed as dist

    # The run joined the group and left it: a rank still in its group at exit can abort in gloo's teardown.
    assert not dist.is_initialized(), "train_roadmap left its process group joined"


@pytest.mark.slow
def test_ddp_two_processes_match_one_at_the_same_global_batch(tmp_path: Path) -> None:
    """LayerNorm step, no augmentation: DDP's averaged gradient equals the one-process
    gradient of the same 32 images, so only float summation order differs."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = write_recipe(tmp_path, "two", epochs=2, batch_size=8, lr_batch=16)
    one = write_recipe(tmp_path, "one", epochs=2, batch_size=16, lr_batch=16)
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), str(two)), nprocs=2, join=True)
    torch.set_num_threads(1)
    train_roadmap(None, data="synthetic:128", recipe=one, seeds=[0], out=tmp_path / "single",
                  steps=["separate_downsampling"], device="cpu", proxy=TINY_PROXY, progress=False)
    meta = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["global_batch"] == 16
    wa, wb = (torch.load(tmp_path / o / "separate_downsampling" / "seed0" / "last.pt", weights_only=False)["model"]
              for o in ("ddp", "single"))
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    ra, rb = result(tmp_path / "ddp", "separate_downsampling"), result(tmp_path / "single", "separate_downsampling")
    print(f"DDP(2x8) vs 1x16 after 16 iterations: max |weight diff| = {diff:.2e}, "
          f"top1 {ra['top1']} vs {rb['top1']}")
    assert diff < 1e-5  # measured: 4.2e-07
    assert ra["top1"] == rb["top1"]


DDP_STOP_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    import torch.multiprocessing as mp
    sys.path.insert(0, {repo!r})
    from pathlib import Path

    def worker(rank, out, recipe, port, stop_rank):
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        torch.set_num_threads(1)
        import modernize.train.loop as loop
        from modernize.proxy import ProxyScale
        from modernize.train import train_roadmap
        if rank == stop_rank:  # only this rank is told to stop, as its evaluation starts
            real = loop.evaluate
            def evaluate(*a, **k):
                os.kill(os.getpid(), signal.SIGTERM)
                return real(*a, **k)
            loop.evaluate = evaluate
        try:
            train_roadmap(None, data="synthetic:128", recipe=recipe, seeds=[0], out=Path(out),
                          steps=["separate_downsampling"], device="cpu", progress=False,
                          proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
        except KeyboardInterrupt:
            sys.exit(130)

    if __name__ == "__main__":
        mp.spawn(worker, args=(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])), nprocs=2, join=True)
""")


@pytest.mark.slow
def test_ddp_stop_in_evaluation_on_one_rank_stops_all_ranks_and_resumes(tmp_path: Path) -> None:
    """SIGTERM reaches one DDP rank as the evaluation starts: every rank stops at the same batch
    (no rank left waiting in a collective: a hang), the checkpoint is saved, and the rerun ends
    with the numbers of a run never stopped."""
    import socket

    def port() -> int:
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            return sk.getsockname()[1]

    script = tmp_path / "ddp.py"
    script.write_text(DDP_STOP_SCRIPT.format(repo=str(REPO)))
    recipe = write_recipe(tmp_path, "two", epochs=2, batch_size=8, lr_batch=16)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def go(out: str, stop_rank: int) -> subprocess.CompletedProcess:
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / out), str(recipe), str(port()),
                                 str(stop_rank)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out_, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:  # a rank left in a collective: kill the spawned ranks too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"{out}: DDP run hung (stop rank {stop_rank})")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out_, err)

    assert go("straight", -1).returncode == 0
    stopped = go("stopped", 1)  # rank 1: not the rank that writes
    assert stopped.returncode != 0 and "exit code 130" in stopped.stderr, stopped.stderr[-2000:]
    mid = result(tmp_path / "stopped", "separate_downsampling")
    assert mid["status"] == "running"
    assert (tmp_path / "stopped" / "separate_downsampling" / "seed0" / "last.pt").is_file()
    assert go("stopped", -1).returncode == 0
    a, b = result(tmp_path / "straight", "separate_downsampling"), result(tmp_path / "stopped", "separate_downsampling")
    assert b["status"] == "done" and (a["top1"], a["top5"]) == (b["top1"], b["top5"])
    # The same stop, then its checkpoint destroyed: rank 0 alone moves it aside and tells rank 1
    # (ranks deciding each on their own raced on the file); both restart the job together.
    assert go("corrupt", 1).returncode != 0
    job = tmp_path / "corrupt" / "separate_downsampling" / "seed0"
    (job / "last.pt").write_bytes(b"not a checkpoint")
    again = go("corrupt", -1)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.count("warning:") == 1 and "unreadable checkpoint" in again.stderr, again.stderr[-2000:]
    c = result(tmp_path / "corrupt", "separate_downsampling")
    assert c["status"] == "done" and (a["top1"], a["top5"]) == (c["top1"], c["top5"])


# --- proxy scale, CLI ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet50_to_convnext_t", "resnet200_to_convnext_b"])
def test_proxy_scales_every_step_consistently(name: str) -> None:
    roadmap = load_roadmap(name)
    for step in roadmap:
        spec = CPU_PROXY.apply(step.spec)
        assert spec.stem_total_stride == 2
        assert all(round(a * 0.25) == b or b % spec.expansion == 0 for a, b in zip(step.spec.dims, spec.dims))
        build_model(spec)
    first, last = (CPU_PROXY.apply(roadmap[i].spec) for i in (0, -1))
    assert (first.stem, last.stem) == ("conv_pool", "patchify")
    assert low_res(roadmap[0].spec, stem_stride=1).stem_total_stride == 1
    assert low_res(roadmap[-1].spec, stem_stride=1).stem_total_stride == 1
    assert scale(roadmap[0].spec, width=0.5).dims == (128, 256, 512, 1024)


def test_cli_errors_exit_2_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    cases = [["--recipe", "nope"], ["--data", "mnist"], ["--data", "fashion-mnist:/no/such/dir"],
             ["--steps", "bogus"], ["--recipe", str(write_recipe(tmp_path, "bad", lr=-1))],
             ["--data", "imagefolder:/no/such"]]
    for extra in cases:
        assert cli_main(["train", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--seeds", "x"])
    assert exc.value.code == 2
    assert not out.exists()


def test_cli_train_synthetic(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    rc = cli_main(["train", "--data", "synthetic:48", "--recipe", str(recipe), "--out", str(tmp_path / "r"),
                   "--steps", "patchify_stem", "--width", "0.125", "--depth", "0.34", "--low-res", "2",
                   "--device", "cpu", "--threads", "1"])
    assert rc == 0 and result(tmp_path / "r", "patchify_stem")["status"] == "done"


def _idx(path: Path) -> np.ndarray:
    """An independent idx reader (big-endian header: 0, 0, dtype 8, ndim; then the dims)."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_fashion_mnist_reader() -> None:
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{folder}: Debian's dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    spec = DataSpec.parse("fashion-mnist")
    data = load_data(spec, data_key(spec, Recipe(resolution=32, crop="pad", train_images=100, val_images=50)))
    assert data.train.images.shape == (100, 1, 32, 32) and data.val.images.shape == (50, 1, 32, 32)
    assert data.num_classes == 10 and data.in_chans == 1
    for split, prefix, total in ((data.train, "train", 60000), (data.val, "t10k", 10000)):
        images = _idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = _idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        assert images.shape == (total, 28, 28) and labels.shape == (total,)
        index: dict[bytes, set[int]] = {}
        for img, label in zip(images, labels):
            index.setdefault(img.tobytes(), set()).add(int(label))
        got = split.images.numpy()
        assert not got[:, :, :2].any() and not got[:, :, -2:].any()  # 28 -> 32 by a 2-px zero border
        seen = set()
        for img, label in zip(got[:, 0, 2:30, 2:30], split.labels.tolist()):
            assert int(label) in index.get(img.tobytes(), set()), f"{prefix}: an image/label pair not in the file"
            seen.add(img.tobytes())
        assert len(seen) == len(got)  # no image twice
        assert len(set(split.labels.tolist())) >= 5  # a subset across classes, not one class
