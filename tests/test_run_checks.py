"""What a run says before it trains (the budget line, ``--plan``), ``describe --step`` with several
names, and a report of a run whose roadmap holds a step that its proxy makes invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from modernize.train.config import prepare_run

from .conftest import write_recipe
from .test_reliability import PROXY_ARGS, STEP, call, one_line_error, train_args


def test_the_budget_line_counts_accumulation(tmp_path: Path) -> None:
    """One source for the budget line and the run line: batch x processes x accumulation."""
    cfg = prepare_run(None, data="synthetic:32", recipe=write_recipe(tmp_path), seeds=[0], out=tmp_path / "run",
                      device="cpu", accum_steps=2)
    budget = next(n for n in cfg.notes if n.startswith("budget: recipe"))
    assert cfg.global_batch == 32
    assert "global batch 32, lr 0.004 " in budget, budget


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modernize.cli import main

    tmp = tmp_path_factory.mktemp("plan")
    assert main(train_args(tmp, tmp / "run")) == 0
    return tmp


@pytest.mark.parametrize("extra, culprit", [
    (["--recipe-lr"], "seed0"),  # a job trained with another recipe: refused as train refuses it
    (["--out-file"], "/f"),
    (["--launcher", "slurm", "--workers", "2"], "--workers"),
])
def test_plan_refuses_what_train_refuses(trained: Path, extra: list[str], culprit: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    tmp = trained
    args = train_args(tmp, tmp / "run", "--plan")
    if extra == ["--recipe-lr"]:
        args[args.index("--recipe") + 1] = str(write_recipe(tmp, "other", lr=1e-3))
    elif extra == ["--out-file"]:
        (tmp / "f").write_text("x")
        args[args.index("--out") + 1] = str(tmp / "f")
    else:
        args += extra
    before = sorted(p for p in (tmp / "run").rglob("*"))
    rc, out, err = call(args, capsys)
    assert rc == 2, (out, err)
    one_line_error(err, culprit)
    assert sorted(p for p in (tmp / "run").rglob("*")) == before
    rc, out, err = call(train_args(tmp, tmp / "run", "--plan"), capsys)
    assert rc == 0 and "every job" in out and "finished" in out, (out, err)


def test_describe_takes_several_steps(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = call(["describe", "--no-counts", "--step", "kernel_7", STEP], capsys)
    assert rc == 0, err
    assert [ln.split()[2] for ln in out.splitlines() if ln.startswith("== ")] == ["kernel_7", STEP]
    rc, out, err = call(["describe", "--no-counts", "--step", "kernel_7", "my.toml"], capsys)
    assert rc == 2
    one_line_error(err, "the roadmap goes before --step")


def test_report_of_a_run_that_left_out_a_step_invalid_under_its_proxy(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """GroupNorm's 32 groups cannot divide the proxy's 8 channels: trained with --steps that leave
    that step out, the run reports; the step is missing (never trained), its drawing at paper scale."""
    rm = tmp_path / "rm.toml"
    rm.write_text('name = "pv"\nbase = "resnet50"\n[[steps]]\nname = "r50"\n[[steps]]\nname = "gn"\n'
                  'apply = {transform = "norm", kind = "group", args = {groups = 32}}\n')
    args = ["train", str(rm), "--data", "synthetic:32", "--recipe", str(write_recipe(tmp_path)), "--out",
            str(tmp_path / "run"), "--steps", "r50", *PROXY_ARGS]
    rc, out, err = call(args, capsys)
    assert rc == 0, err
    assert "missing" in next(ln for ln in out.splitlines() if ln.strip().startswith("gn "))
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    rc, out, err = call(args[:-len(PROXY_ARGS) - 2] + PROXY_ARGS, capsys)  # every step: the invalid one is named
    assert rc == 2
    one_line_error(err, "step 'gn' is invalid under proxy")
