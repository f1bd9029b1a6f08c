"""One identity of a result, checked everywhere (``runfolder.job_mismatch`` / ``stale_reason``):
what ``train`` checks before reusing a job, ``report`` and ``compare`` check before showing
one; the fingerprint of a user kind covers the local modules its module imports; a run folder
keeps a copy of its sources and reads the same wherever it is; each job records the code and
machine that trained it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from modernize import provenance, runfolder
from modernize.errors import ConfigError
from modernize.kinds import REGISTRIES
from modernize.proxy import ProxyScale
from modernize.report import load_run, summarize
from modernize.report.compare import compare_runs
from modernize.roadmap import load_roadmap
from modernize.runfolder import read_run_meta, write_run_meta
from modernize.train import fingerprint as fp
from modernize.train import train_roadmap
from modernize.train.fingerprint import user_kind_hashes
from tests.report_fixture import make_run, small_roadmap

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("idk_helpers", "idk_a", "idk_b")
HELPERS = '''
from torch import nn


class Scaled(nn.Module):
    """The layers of kind 'idk_scaled' live here, not in the module that registers it."""

    def forward(self, x):
        return nn.functional.relu(x) * SCALE


SCALE = 1.0
'''
KINDS_A = '''
import json  # the standard library: not the user's code
from modernize.kinds import register_act
from idk_helpers import Scaled


@register_act("idk_scaled", label="scaled ReLU")
def scaled():
    return Scaled()
'''
KINDS_B = '''
from torch import nn
from modernize.kinds import register_act


@register_act("idk_hard", label="hard tanh")
def hard():
    return nn.Hardtanh()
'''
ROADMAP = '''
name = "idk"
base = "resnet50"
imports = ["idk_a", "idk_b"]

[[steps]]
name = "a"
apply = {transform = "act", kind = "idk_scaled"}

[[steps]]
name = "b"
apply = {transform = "act", kind = "idk_hard"}
'''
RECIPE = ('epochs = 1\nbatch_size = 16\nlr = 2e-3\nlr_batch = 16\nwarmup_epochs = 0\nresolution = 16\n'
          'crop = "none"\nhflip = false\ndrop_path = 0.0\nlabel_smoothing = 0.0\nprecision = "fp32"\n'
          'channels_last = false\nprecise_bn_batches = 0\ntrain_images = 32\nval_images = 16\n')
PROXY = ProxyScale(width=0.125, depth=0.34, stem_stride=2)


def forget_modules() -> None:
    """A fresh process's view: the user modules are imported again from wherever the roadmap is."""
    for name in MODULES:
        sys.modules.pop(name, None)


def write_lab(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in zip(MODULES, (HELPERS, KINDS_A, KINDS_B)):
        (folder / f"{name}.py").write_text(text)
    (folder / "idk.toml").write_text(ROADMAP)
    (folder / "tiny.toml").write_text(RECIPE)


def train(lab: Path, **kw: object) -> Path:
    """Train as the tutorial does: from the lab folder, with relative paths."""
    forget_modules()
    cwd = Path.cwd()
    os.chdir(lab)
    try:
        return train_roadmap("idk.toml", data="synthetic:32", recipe="tiny.toml", out=Path("run"), device="cpu",
                             progress=False, proxy=PROXY, **({"seeds": [0]} | kw))  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A lab folder (roadmap, recipe, two kind modules, a helper) and its run: steps a, b, seed 0."""
    lab = tmp_path_factory.mktemp("lab") / "lab"
    write_lab(lab)
    train(lab)
    yield lab
    forget_modules()
    for registry in REGISTRIES.values():
        for name in [n for n in registry if n.startswith("idk_")]:
            del registry[name]


@pytest.fixture
def lab(trained: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the trained lab of its own (tests edit it)."""
    copy = tmp_path / "lab"
    shutil.copytree(trained, copy)
    yield copy
    forget_modules()


def results(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): p.read_text() for p in sorted(run.glob("*/seed*/result.json"))}


def test_local_modules_are_the_users_files_only(lab: Path) -> None:
    from modernize.usercode import local_modules

    forget_modules()
    load_roadmap(lab / "idk.toml")
    found = local_modules(["idk_a"])
    assert found == {"idk_a": (lab / "idk_a.py").resolve(), "idk_helpers": (lab / "idk_helpers.py").resolve()}


def test_a_helper_module_edited_refuses_the_kinds_jobs_not_the_others(lab: Path) -> None:
    """The layers of 'idk_scaled' live in idk_helpers.py: an edit there refuses step a's job
    until --force (not "done already, skipped"); step b uses no kind of that module and is
    still reused, byte for byte. The report then shows step a's job as stale, never averaged."""
    run = lab / "run"
    before = results(run)
    (lab / "idk_helpers.py").write_text(HELPERS.replace("SCALE = 1.0", "SCALE = 2.0"))
    with pytest.raises(ConfigError, match=r"a/seed0: trained with a different configuration; differs in: kinds"):
        train(lab)
    assert results(run) == before
    train(lab, steps=["b"])  # unaffected by the edit: reused, nothing retrained
    assert results(run) == before
    with pytest.raises(ConfigError, match=r"a/seed0: not a result of this run: .*kinds\.act:idk_scaled"):
        load_run(run)
    kept = load_run(run, keep_stale=True)
    assert kept.results["a"] == {} and "kinds.act:idk_scaled" in kept.stale["a"][0]
    assert kept.results["b"][0]["status"] == "done" and "b" not in kept.stale
    table = summarize(kept).set_index("step")
    assert table.loc["a", "n"] == 0 and table.loc["b", "n"] == 1


def test_an_unrelated_kind_module_edited_keeps_the_other_steps(lab: Path) -> None:
    run = lab / "run"
    before = results(run)
    (lab / "idk_b.py").write_text(KINDS_B.replace("nn.Hardtanh()", "nn.Hardtanh(-2.0, 2.0)"))
    train(lab, steps=["a"])  # step a uses none of idk_b's kinds
    assert results(run) == before
    with pytest.raises(ConfigError, match=r"b/seed0: trained with a different configuration; differs in: kinds"):
        train(lab, steps=["b"])


def test_fingerprint_of_a_kind_covers_its_helpers_only(lab: Path) -> None:
    forget_modules()
    rm = load_roadmap(lab / "idk.toml")
    a, b = user_kind_hashes(rm["a"].spec), user_kind_hashes(rm["b"].spec)
    (lab / "idk_helpers.py").write_text(HELPERS + "\n# an edit\n")
    forget_modules()
    rm = load_roadmap(lab / "idk.toml")
    assert user_kind_hashes(rm["a"].spec) != a and user_kind_hashes(rm["b"].spec) == b


def test_a_seed_folder_copied_as_another_seed_is_not_a_second_seed(lab: Path, tmp_path: Path) -> None:
    run = lab / "run"
    shutil.copytree(run / "a" / "seed0", run / "a" / "seed1")
    meta = read_run_meta(run)
    meta["seeds"] = [0, 1]
    write_run_meta(run, meta)
    with pytest.raises(ConfigError, match=r"a/seed1: not a result of this run: result.json records seed 0"):
        load_run(run)
    assert summarize(load_run(run, keep_stale=True)).set_index("step").loc["a", "n"] == 1
    with pytest.raises(ConfigError, match=r"a/seed1: not a result of this run"):
        compare_runs([run, tmp_path / "another"])  # the first run is refused before the second is read
    # config.json also says seed 0 (the result.json fixed by hand): still not seed 1's job
    result = json.loads((run / "a" / "seed1" / "result.json").read_text())
    (run / "a" / "seed1" / "result.json").write_text(json.dumps(result | {"seed": 1}))
    spec = load_roadmap(run / ".source" / "idk.toml")["a"].spec.to_dict()
    assert "seed (0 -> 1)" in (runfolder.stale_reason(run, meta, "a", spec, 1) or "")


def test_a_copied_seed_of_a_hand_written_run_is_refused(tmp_path: Path) -> None:
    """Run folders without config.json (written by other tools): result.json's seed is checked."""
    roadmap = str(small_roadmap(tmp_path))
    make_run(tmp_path / "run", roadmap=roadmap, seeds=(0, 1), epochs=1)
    shutil.rmtree(tmp_path / "run" / "stage_ratio" / "seed1")
    shutil.copytree(tmp_path / "run" / "stage_ratio" / "seed0", tmp_path / "run" / "stage_ratio" / "seed1")
    with pytest.raises(ConfigError, match=r"stage_ratio/seed1: not a result of this run: result.json records seed 0"):
        load_run(tmp_path / "run")


def test_a_moved_run_folder_reads_the_same_from_anywhere(lab: Path, tmp_path: Path) -> None:
    """Trained with a relative roadmap path, then moved elsewhere with the lab removed (another
    machine): the report reads the roadmap and user modules the run folder keeps."""
    forget_modules()
    table = summarize(load_run(lab / "run")).to_csv(index=False)
    kept = sorted(str(p.relative_to(lab / "run" / ".source")) for p in (lab / "run" / ".source").rglob("*")
                  if p.is_file())
    assert kept == ["idk.toml", "idk_a.py", "idk_b.py", "idk_helpers.py", "recipes/tiny.toml"]
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(lab / "run", moved)
    shutil.rmtree(lab)
    code = ("import sys; from modernize.report import load_run, summarize; "
            "sys.stdout.write(summarize(load_run(sys.argv[1])).to_csv(index=False))")
    proc = subprocess.run([sys.executable, "-c", code, "moved"], cwd=moved.parent, capture_output=True, text=True,
                          timeout=300, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == table
    assert pd.read_csv(moved / "a" / "seed0" / "log.csv")["epoch"].tolist() == [1]


def test_a_rerun_that_trains_nothing_keeps_each_jobs_provenance(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = lab / "run"
    trained_by = json.loads((run / "a" / "seed0" / "result.json").read_text())["code"]
    now = provenance.code_version()
    assert (trained_by["package"], trained_by["commit"]) == (now["package"], now["commit"])
    before = results(run)
    later = trained_by | {"package": "9.9.9", "commit": "f" * 40}
    monkeypatch.setattr(fp, "code_version", lambda: later)  # the same run folder, later code
    train(lab)
    assert results(run) == before
    assert read_run_meta(run)["code"] == later  # run.json: the command that last wrote it
    info = compare_runs([run, shutil.copytree(run, lab / "copy")]).runs[0]
    assert info.code == provenance.describe_code(trained_by) and "9.9.9" not in info.code


def test_report_of_a_run_folder_from_the_previous_version(lab: Path) -> None:
    """run.json without 'identity' and 'source' (written before them): the roadmap is read from
    the path run.json names, and the jobs are checked by what run.json determines."""
    run = lab / "run"
    meta = read_run_meta(run)
    del meta["identity"], meta["source"]  # type: ignore[misc]
    write_run_meta(run, meta)
    shutil.rmtree(run / ".source")
    cwd = Path.cwd()
    os.chdir(lab)  # its roadmap path is relative: readable from the folder it was trained in
    try:
        forget_modules()
        assert summarize(load_run(Path("run"))).set_index("step").loc["a", "n"] == 1
        shutil.copytree(run / "a" / "seed0", run / "a" / "seed1")
        meta["seeds"] = [0, 1]
        write_run_meta(run, meta)
        with pytest.raises(ConfigError, match=r"a/seed1: not a result of this run"):
            load_run(Path("run"))
    finally:
        os.chdir(cwd)


def test_run_json_records_the_proxy_as_its_settings_and_reads_older_notes(lab: Path) -> None:
    """run.json's proxy is ProxyScale's fields, nothing in prose; one written with the older
    "note"/"low_res" keys reads as the same settings, and its jobs are reused."""
    from dataclasses import fields

    from modernize.proxy import ProxyScale

    run = lab / "run"
    raw = json.loads((run / "run.json").read_text())
    assert set(raw["proxy"]) == {f.name for f in fields(ProxyScale)}
    raw["proxy"] |= {"low_res": True, "note": "width/depth multipliers on every step's spec"}
    (run / "run.json").write_text(json.dumps(raw))
    assert read_run_meta(run)["proxy"] == PROXY.to_dict()
    before = results(run)
    train(lab)
    assert results(run) == before


def test_the_identity_check_needs_no_torch() -> None:
    """The check sits below the engine and the report (``runfolder``): importing it loads no torch."""
    code = textwrap.dedent("""
        import sys
        import modernize.runfolder, modernize.usercode
        assert "torch" not in sys.modules, "torch imported"
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
