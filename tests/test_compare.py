"""Runs side by side (``run_ablation.py compare``, issue 21 deliverable 3): two tiny real runs
(synthetic data, 2 steps, 2 seeds, different lr), the csv columns, the Welch interval against
SciPy's own, a missing step, and the code version and machine each run folder records."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from modernize.cli import main
from modernize.errors import ConfigError
from modernize.report import load_run, summarize
from modernize.report.compare import compare_runs
from modernize.runfolder import read_run_meta, write_run_meta
from modernize.train import train_roadmap
from tests.conftest import TINY, TINY_PROXY, recipe_text
from tests.report_fixture import make_run, small_roadmap

STEPS = ("kernel_7", "separate_downsampling")
def _train(root: Path, name: str, lr: float, steps: tuple[str, ...]) -> Path:
    recipe = root / f"{name}.toml"
    recipe.write_text(recipe_text(TINY | {"lr": lr}))
    return train_roadmap(None, data="synthetic:64", recipe=recipe, seeds=[0, 1], out=root / name, steps=list(steps),
                         device="cpu", proxy=TINY_PROXY, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare")
    return _train(root, "base_lr", 2e-3, STEPS), _train(root, "high_lr", 8e-3, STEPS[:1])  # high_lr lacks a step


def _top1(run: Path, step: str) -> list[float]:
    return [json.loads((run / step / f"seed{k}" / "result.json").read_text())["top1"] for k in (0, 1)]


@pytest.mark.slow
def test_compare_csv_columns_welch_interval_and_missing_step(runs: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    a, b = runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.json", "compare.md", "compare.png",
                                                     "compare.tex"]
    table = pd.read_csv(out / "compare.csv")
    assert list(table.columns) == ["step", "base_lr_status", "base_lr_n", "base_lr_mean", "base_lr_std",
                                   "high_lr_status", "high_lr_n", "high_lr_mean", "high_lr_std", "high_lr_diff",
                                   "high_lr_diff_lo", "high_lr_diff_hi"]
    assert list(table["step"]) == list(STEPS)
    row = table.set_index("step").loc["kernel_7"]
    ya, yb = _top1(a, "kernel_7"), _top1(b, "kernel_7")
    assert row["base_lr_mean"] == pytest.approx(sum(ya) / 2, abs=1e-4)
    assert row["high_lr_diff"] == pytest.approx(sum(yb) / 2 - sum(ya) / 2, abs=1e-4)
    if ya[0] != ya[1] or yb[0] != yb[1]:  # SciPy's own Welch interval for the same seeds
        ci = stats.ttest_ind(yb, ya, equal_var=False).confidence_interval(0.95)
        assert (row["high_lr_diff_lo"], row["high_lr_diff_hi"]) == pytest.approx((ci.low, ci.high), abs=1e-3)
    gone = table.set_index("step").loc["separate_downsampling"]
    assert gone["high_lr_status"].startswith("missing") and gone["high_lr_n"] == 0
    assert math.isnan(gone["high_lr_diff"]) and gone["base_lr_n"] == 2
    md = (out / "compare.md").read_text()
    assert "recipe.lr (0.002 -> 0.008)" in md and "| separate_downsampling |" in md and "missing" in md
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "\\toprule" in (out / "compare.tex").read_text()
    assert "high_lr - base_lr" in capsys.readouterr().out


@pytest.mark.slow
def test_run_folders_record_code_and_machine(runs: tuple[Path, Path], tmp_path: Path) -> None:
    meta = read_run_meta(runs[0])
    assert meta["code"]["package"] and "commit" in meta["code"]
    assert meta["machine"]["cpu"] and meta["machine"]["cores"] >= 1
    old = tmp_path / "old"  # a run folder from before these fields: still read, shown as unknown
    import shutil

    shutil.copytree(runs[1], old)
    meta = read_run_meta(old)
    del meta["code"], meta["machine"]
    write_run_meta(old, meta)
    for path in old.glob("*/seed*/result.json"):  # jobs of that time did not record theirs either
        result = json.loads(path.read_text())
        assert result["code"] == read_run_meta(runs[1])["code"]  # recorded by the process that trained it
        del result["code"], result["machine"]
        path.write_text(json.dumps(result))
    cmp = compare_runs([runs[0], old])
    assert cmp.runs[1].code.startswith("unknown") and cmp.runs[1].machine.startswith("unknown")
    assert load_run(old).meta.get("code") is None
    assert summarize(load_run(old)).set_index("step").loc["kernel_7", "n"] == 2


def test_welch_interval_equals_scipys(tmp_path: Path) -> None:
    """Seed values chosen by hand (a tiny real run often ties its seeds): the interval is SciPy's."""
    roadmap = str(small_roadmap(tmp_path))
    a = {"resnet50": [80.0, 80.5, 81.0], "stage_ratio": [81.0, 81.4, 81.1], "patchify_stem": [79.0, 79.2, 79.9]}
    b = {"resnet50": [80.9, 81.7], "stage_ratio": [80.0, 80.3], "patchify_stem": [79.5, 79.6]}
    make_run(tmp_path / "a", roadmap=roadmap, seeds=(0, 1, 2), epochs=1, top1=a)
    make_run(tmp_path / "b", roadmap=roadmap, seeds=(0, 1), epochs=1, top1=b, missing_steps=("depthwise",))
    table = compare_runs([tmp_path / "a", tmp_path / "b"]).table.set_index("step")
    for step in a:
        ci = stats.ttest_ind(b[step], a[step], equal_var=False).confidence_interval(0.95)
        row = table.loc[step]
        assert row["b_diff"] == pytest.approx(sum(b[step]) / 2 - sum(a[step]) / 3)
        assert (row["b_diff_lo"], row["b_diff_hi"]) == pytest.approx((ci.low, ci.high))
        assert row["a_std"] == pytest.approx(stats.tstd(a[step]))
    assert table.loc["depthwise", "b_status"] == "missing" and math.isnan(table.loc["depthwise", "b_diff"])


def test_compare_needs_two_runs_sharing_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="at least two run folders"):
        compare_runs([tmp_path])
    make_run(tmp_path / "a", roadmap=str(small_roadmap(tmp_path)), seeds=(0,), epochs=1)
    other = tmp_path / "other.toml"
    other.write_text('name = "other"\nbase = "resnet50"\n[[steps]]\nname = "mine"\n')
    make_run(tmp_path / "b", roadmap=str(other), seeds=(0,), epochs=1)
    with pytest.raises(ConfigError, match=r"b shares no step name with the baseline .*\(roadmaps small and other\)"):
        compare_runs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError, match="are one run folder"):  # a run beside itself checks nothing
        compare_runs([tmp_path / "a", tmp_path / "." / "a"])
    shutil.copytree(tmp_path / "a", tmp_path / "copy" / "a")
    cmp = compare_runs([tmp_path / "a", tmp_path / "copy" / "a"])  # two folders of one name: labels stay apart
    assert [r.label for r in cmp.runs] == ["a", "a_2"] and cmp.runs[1].differs == "nothing"


def test_compare_json_renders_every_file_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """compare.json alone gives back every file; a folder from before compare.json migrates."""
    import shutil

    from modernize.report import Status
    from modernize.report.compare import Comparison, write_comparison

    roadmap = str(small_roadmap(tmp_path))
    a = {"resnet50": [73.32, 72.77], "stage_ratio": [81.0, 81.4], "patchify_stem": [79.0, 79.2]}
    make_run(tmp_path / "a", roadmap=roadmap, seeds=(0, 1), epochs=1, top1=a)
    make_run(tmp_path / "b", roadmap=roadmap, seeds=(0, 1), epochs=1, top1=a | {"resnet50": [74.0, 74.5]},
             failed={"stage_ratio": 1}, missing_steps=("depthwise",))
    out = tmp_path / "cmp"
    write_comparison(compare_runs([tmp_path / "a", tmp_path / "b"]), out)
    cmp = Comparison.from_json((out / "compare.json").read_text())
    cells = {r.step: r.cells[1] for r in cmp.rows}
    assert cells["depthwise"].status is Status.MISSING and cells["stage_ratio"].status is Status.MISSING
    assert cells["stage_ratio"].status_reason.startswith("failed")  # no finished seed: missing, and why
    assert "73.05 ± 0.39 (n=2)" in (out / "compare.md").read_text()  # the report's one rounding
    for folder, keep in (("alone", ("compare.json",)), ("old", ("compare.csv", "compare.md"))):
        (tmp_path / folder).mkdir()
        for name in keep:
            shutil.copy(out / name, tmp_path / folder / name)
        assert main(["compare", "--rerender", str(tmp_path / folder)]) == 0
        for name in ("compare.csv", "compare.md", "compare.tex") + (("compare.png",) if folder == "alone" else ()):
            assert (tmp_path / folder / name).read_bytes() == (out / name).read_bytes(), (folder, name)
    assert main(["compare", "--rerender", str(tmp_path / "nothing")]) == 2
    assert "compare.json" in capsys.readouterr().err
