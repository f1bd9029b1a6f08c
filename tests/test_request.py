"""The run request: the command line, the Python API and the Slurm submission build the same
``RunRequest`` and ``Execution`` for the same options (so a default cannot drift between
them), the values are frozen, hashable and picklable, and checking a request starts no
process group."""

from __future__ import annotations

import dataclasses
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist

from modernize.cli import build_parser
from modernize.cli.train import run_request
from modernize.data import DataSpec
from modernize.errors import ConfigError
from modernize.launch import SlurmOptions
from modernize.proxy import PROXIES, proxy_preset
from modernize.recipe import load_recipe
from modernize.request import Execution, RunRequest, request_of
from modernize.roadmap import load_roadmap
from modernize.train import Dist, prepare_run
from modernize.train.fingerprint import fingerprint_parts
from tests.test_train import write_recipe

STEPS = ["resnet50", "patchify_stem", "widen", "kernel_7", "gelu"]


def random_options(rng: random.Random, tmp: Path) -> tuple[list[str], dict[str, Any]]:
    """Random values for every option the command line and the Python API share, as flags and
    as keywords (away from the defaults, so a flag that is dropped on one path shows)."""
    seeds = rng.sample(range(0, 9), rng.randint(1, 3))
    steps = rng.sample(STEPS, rng.randint(1, 3))
    proxy = rng.choice([p for p in PROXIES if p != "paper"])
    accum, ckpt, timeout = rng.randint(1, 3), rng.randint(1, 50), float(rng.randint(10, 900))
    n, compile_ = 16 * rng.randint(6, 9), rng.random() < 0.5
    recipe = write_recipe(tmp)
    flags = ["train", "--data", f"synthetic:{n}", "--recipe", str(recipe), "--seeds", *map(str, seeds),
             "--steps", *steps, "--proxy", proxy, "--accum-steps", str(accum), "--ckpt-every", str(ckpt),
             "--claim-timeout", f"{timeout:g}", "--device", "cpu", "--out", str(tmp / "run"), "--tensorboard",
             *(["--compile"] if compile_ else [])]
    keywords = dict(data=f"synthetic:{n}", recipe=str(recipe), seeds=seeds, steps=steps, proxy=proxy_preset(proxy),
                    accum_steps=accum, ckpt_every=ckpt, claim_timeout=timeout, device="cpu", out=tmp / "run",
                    tensorboard=True, compile=True if compile_ else None)
    return flags, keywords


def test_the_command_line_defaults_are_the_fields_defaults() -> None:
    """``train`` with no option asks exactly ``RunRequest()`` and ``Execution()``; ``explore``
    the quiet execution and two seeds."""
    from modernize.cli.explore import _setup
    from modernize.explore.execute import QUIET

    assert run_request(build_parser().parse_args(["train"])) == (RunRequest(out=Path("runs") / "train"), Execution())
    setup = _setup(build_parser().parse_args(["explore"]))
    assert setup.execution == QUIET
    assert setup.request == RunRequest(out=setup.store, seeds=(0, 1))


@pytest.mark.parametrize("seed", [3, 17, 2024])
def test_command_line_python_and_slurm_ask_the_same_run(seed: int, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Random options, given as flags and as keywords: equal request and execution; the Slurm
    tasks get that request pinned (roadmap, recipe, proxy resolved), which prepares to the same
    run and the same job fingerprints."""
    from modernize import launch
    from modernize.cli import main

    flags, keywords = random_options(random.Random(seed), tmp_path)
    cli = run_request(build_parser().parse_args(flags))
    assert cli == request_of(None, None, keywords)
    sent: list[tuple[RunRequest, Execution]] = []
    monkeypatch.setattr(launch, "submit", lambda pending, request, execution, opts: sent.append((request, execution))
                        or [])
    monkeypatch.setenv("MODERNIZE_SUBMITIT_LOCAL", "1")  # submitit's local executor: no sbatch needed
    assert main([*flags, "--launcher", "slurm"]) == 0
    launch.submit_roadmap(None, slurm=SlurmOptions(cluster="local"), **keywords)
    assert len(sent) == 2 and sent[0] == sent[1]
    request, execution = sent[0]
    assert execution == dataclasses.replace(cli[1], device="cpu")
    cfg = prepare_run(*cli)
    assert request == dataclasses.replace(cli[0], roadmap=cfg.roadmap, recipe=cfg.recipe, proxy=cfg.proxy,
                                          data=str(DataSpec.parse(keywords["data"])))
    task = prepare_run(request, execution)
    assert task.compared() == cfg.compared()
    assert [fingerprint_parts(task, s, task.recipe_of(s), k) for s in task.steps for k in task.seeds] == \
        [fingerprint_parts(cfg, s, cfg.recipe_of(s), k) for s in cfg.steps for k in cfg.seeds]


def test_slurm_submission_honours_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--force`` travels with the request to the submission, which moves the job trained
    differently aside and submits it again; the tasks themselves get no ``force`` (they must
    not move each other's folders)."""
    from modernize import launch
    from modernize.cli import main
    from modernize.train import train_roadmap

    common = ["--data", "synthetic:32", "--steps", "patchify_stem", "--proxy", "cpu", "--device", "cpu",
              "--out", str(tmp_path / "run")]
    first = run_request(build_parser().parse_args(["train", *common, "--recipe", str(write_recipe(tmp_path))]))[0]
    train_roadmap(first, Execution(device="cpu", progress=False, threads=1))
    sent: list[tuple[list[tuple[str, int]], RunRequest]] = []
    monkeypatch.setattr(launch, "submit", lambda pending, request, execution, opts: sent.append((pending, request))
                        or [])
    monkeypatch.setenv("MODERNIZE_SUBMITIT_LOCAL", "1")
    other = ["train", *common, "--recipe", str(write_recipe(tmp_path, "tiny2", lr=1e-3)), "--launcher", "slurm"]
    assert main(other) == 2 and "trained with a different configuration" in capsys.readouterr().err
    assert main([*other, "--force"]) == 0
    assert [p.relative_to(tmp_path / "run" / ".replaced").parts[1:] for p in
            (tmp_path / "run" / ".replaced").glob("*/patchify_stem/seed0")] == [("patchify_stem", "seed0")]
    assert sent[0][0] == [("patchify_stem", 0)] and sent[0][1].force is False


def test_a_request_is_frozen_hashable_and_picklable(tmp_path: Path) -> None:
    request = RunRequest(out=tmp_path, seeds=[2, 0], steps=["widen"], proxy=proxy_preset("cpu"), accum_steps=2)
    execution = Execution(device="cpu", workers=2, threads=1)
    assert request.seeds == (2, 0) and request.steps == ("widen",)  # lists become tuples
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seeds = (1,)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        execution.workers = 3  # type: ignore[misc]
    assert hash(request) == hash(RunRequest(out=tmp_path, seeds=(2, 0), steps=("widen",), proxy=proxy_preset("cpu"),
                                            accum_steps=2))
    assert len({execution, Execution(device="cpu", workers=2, threads=1), Execution()}) == 2
    resolved = dataclasses.replace(request, roadmap=load_roadmap(None), recipe=load_recipe("quick"))
    for value in (request, execution, resolved):  # what a Slurm task and a spawned worker receive
        assert pickle.loads(pickle.dumps(value)) == value


@pytest.mark.parametrize(("make", "message"), [
    (lambda out: RunRequest(out=out, seeds=()), "--seeds: give at least one seed"),
    (lambda out: RunRequest(out=out, seeds=(0, -1)), "--seeds: seeds must be >= 0, got [0, -1]"),
    (lambda out: RunRequest(out=out, accum_steps=0), "--accum-steps: a whole number >= 1, got 0"),
    (lambda out: RunRequest(out=out, accum_steps=True), "--accum-steps: a whole number >= 1, got True"),
    (lambda out: Execution(workers=0), "workers: a whole number >= 1, got 0"),
    (lambda out: Execution(claim_timeout=1.0), "--claim-timeout: at least"),
])
def test_a_request_refuses_bad_values_when_made(make: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        make(tmp_path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_an_unknown_keyword_names_the_fields(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unexpected run option.*sedes.*seeds"):
        request_of(None, None, {"out": tmp_path, "sedes": [0]})


def test_checking_a_request_under_torchrun_starts_no_process_group(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_run reads torchrun's environment (the world size sets the global batch and the
    fingerprints) but joins nothing: that is the engine's first step. Here no MASTER_ADDR is
    set, so a join would raise."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    cfg = prepare_run(None, out=tmp_path / "run", data="synthetic:64", recipe=write_recipe(tmp_path),
                      steps=["patchify_stem"], device="cpu")
    assert not dist.is_initialized()
    assert cfg.dist == Dist(rank=1, world=2, local_rank=0)
    assert cfg.global_batch == 2 * cfg.recipe.batch_size
