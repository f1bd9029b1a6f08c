"""The reproduction check: a run against a reference report, step by step, within the
reference's seed spread. It must flag a shifted step and pass an unshifted one; the main job
and every default output leave a checkout's reports/ untouched."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import realistic  # noqa: E402

from modernize import paths  # noqa: E402
from modernize.checks.reference import K_SIGMA, check_reproduction, pooled_spread, read_reference  # noqa: E402
from modernize.cli import main  # noqa: E402
from modernize.errors import ConfigError  # noqa: E402
from modernize.report import build_report  # noqa: E402


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    realistic(root / "run")
    build_report(root / "run", root / "ref")
    return root / "ref"


def test_report_keeps_every_seed(reference: Path) -> None:
    seeds = pd.read_csv(reference / "seeds.csv")
    table = pd.read_csv(reference / "table.csv").set_index("step")
    for step, group in seeds.groupby("step"):
        assert len(group) == table.loc[step, "n"]
        assert group["top1"].mean() == pytest.approx(table.loc[step, "top1_mean"], abs=1e-4)


def test_the_reference_reproduces_itself(reference: Path) -> None:
    check = check_reproduction(pd.read_csv(reference / "seeds.csv"), reference)
    assert not check.outside and len(check.compared) == len(read_reference(reference))
    assert check.summary().startswith(f"reproduction: {len(check.compared)} of {len(check.compared)} steps within")


@pytest.mark.parametrize("shift", [-4.0, 3.0])
def test_a_step_shifted_by_a_few_points_is_flagged(reference: Path, shift: float) -> None:
    seeds = pd.read_csv(reference / "seeds.csv")
    step = seeds["step"].iloc[len(seeds) // 2]
    spread = pooled_spread(read_reference(reference))
    n = int((seeds["step"] == step).sum())
    assert abs(shift) > K_SIGMA * spread * math.sqrt(2 / n)  # the fixture's spread makes the shift detectable
    seeds.loc[seeds["step"] == step, "top1"] += shift
    check = check_reproduction(seeds, reference)
    assert [c.step for c in check.outside] == [step]
    assert f"outside: {step} {shift:+.2f}" in check.summary()


def test_a_small_shift_within_the_spread_passes(reference: Path) -> None:
    seeds = pd.read_csv(reference / "seeds.csv")
    seeds["top1"] += 0.5 * pooled_spread(read_reference(reference))
    assert not check_reproduction(seeds, reference).outside


def test_a_table_only_reference_and_a_missing_step(reference: Path, tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_bytes((reference / "table.csv").read_bytes())  # an older report: no seeds.csv
    seeds = pd.read_csv(reference / "seeds.csv")
    dropped = seeds["step"].iloc[0]
    check = check_reproduction(seeds[seeds["step"] != dropped], tmp_path)
    assert not check.outside
    assert f"{dropped} missing in this run" in check.summary()


def test_bad_reference_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither seeds.csv nor table.csv"):
        read_reference(tmp_path)
    (tmp_path / "seeds.csv").write_text("step,seed\nx,0\n")
    with pytest.raises(ConfigError, match="no column"):
        read_reference(tmp_path)


def test_report_reference_flag(reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    realistic(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--reference", str(reference)]) == 0
    assert "reproduction: " in capsys.readouterr().out
    assert (tmp_path / "out" / "reproduction.md").is_file()
    record = json.loads((tmp_path / "out" / "report.json").read_text())["reproduction"]
    assert record["reference"] == str(reference) and len(record["steps"]) >= 1
    md = (tmp_path / "out" / "reproduction.md").read_bytes()
    (tmp_path / "out" / "reproduction.md").unlink()
    assert main(["report", str(tmp_path / "out"), "--page-only"]) == 0  # the record keeps the check
    assert (tmp_path / "out" / "reproduction.md").read_bytes() == md
    assert main(["report", str(tmp_path / "run"), "--reference", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "run" / "report").exists()  # refused before any write


def test_default_outputs_are_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "REPO_ROOT", None)  # an installed package: the current folder is the work root
    monkeypatch.chdir(tmp_path)
    assert paths.default_out("r") == tmp_path / "runs" / "r"
    assert main(["flops"]) == 0
    assert (tmp_path / "runs" / "resnet50_to_convnext_t" / "flops.csv").is_file()
    assert not (tmp_path / "reports").exists()


def test_a_reference_without_a_spread_is_refused_before_the_report(reference: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    realistic(tmp_path / "run")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "seeds.csv").write_text("step,seed,top1\nresnet50,0,74.0\nrecipe,0,75.0\n")
    assert main(["report", str(tmp_path / "run"), "--reference", str(tmp_path / "ref")]) == 2
    assert "no step has two or more seeds" in capsys.readouterr().err
    assert not (tmp_path / "run" / "report").exists()


BAD_SEEDS = [  # (what is wrong, seeds.csv body after the header "step,seed,top1,top5", the row named)
    ("a duplicated (step, seed)", "a,0,70,90\na,1,71,91\na,0,70,90\n", "row 1 (line 2) and row 3 (line 4)"),
    ("infinity", "a,0,70,90\na,1,inf,91\n", "row 2 (line 3)"),
    ("nan", "a,0,nan,90\na,1,71,91\n", "row 1 (line 2)"),
    ("a percent sign", "a,0,70,90\na,1,12.5%,91\n", "row 2 (line 3)"),
    ("top-1 above 100", "a,0,250,90\na,1,71,91\n", "row 1 (line 2)"),
    ("top-1 below 0", "a,0,-5,90\na,1,71,91\n", "row 1 (line 2)"),
    ("top-5 above 100", "a,0,70,100.5\na,1,71,91\n", "row 1 (line 2)"),
    ("an empty top-1", "a,0,,90\na,1,71,91\n", "row 1 (line 2)"),
    ("a fractional seed", "a,0.5,70,90\na,1,71,91\n", "row 1 (line 2)"),
]
BAD_TABLES = [  # a table-only reference: step,n,top1_mean,top1_std
    ("n = 2.5", "a,2.5,70,0.5\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("a negative std", "a,2,70,-0.5\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("n = 0 with a mean", "a,0,70,\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("n = -1", "a,-1,70,0.5\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("a duplicated step", "a,2,70,0.5\na,2,71,0.5\n", "row 1 (line 2) and row 2 (line 3)"),
    ("a std of nan", "a,2,70,nan\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("a mean of 101", "a,2,101,0.5\nb,2,71,0.5\n", "row 1 (line 2)"),
    ("n = 3 without a std", "a,3,70,\nb,2,71,0.5\n", "row 1 (line 2)"),
]


@pytest.mark.parametrize(("what", "body", "row"), BAD_SEEDS + BAD_TABLES, ids=[b[0] for b in BAD_SEEDS + BAD_TABLES])
def test_every_bad_reference_row_is_one_line_naming_file_and_row(
        reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, body: str, row: str) -> None:
    """Before: duplicates were counted twice, inf shown, nan and 12.5% dropped silently, 250 and -5
    accepted as top-1, n = 2.5 and a negative std taken from a table-only reference."""
    name, header = (("seeds.csv", "step,seed,top1,top5") if (what, body, row) in BAD_SEEDS
                    else ("table.csv", "step,n,top1_mean,top1_std"))
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / name).write_text(f"{header}\n{body}")
    with pytest.raises(ConfigError) as err:
        read_reference(tmp_path / "ref")
    assert str(err.value).startswith(f"{tmp_path / 'ref' / name}: {row}") and "\n" not in str(err.value)
    realistic(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--reference", str(tmp_path / "ref")]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and f"{name}: {row}" in said, said
    assert not (tmp_path / "run" / "report").exists()  # refused before any write


def test_a_valid_table_reference_skips_steps_without_seeds(tmp_path: Path) -> None:
    (tmp_path / "table.csv").write_text("step,n,top1_mean,top1_std\na,2,70,0.5\nb,0,,\nc,1,72,\n")
    ref = read_reference(tmp_path)
    assert list(ref.index) == ["a", "c"] and list(ref["n"]) == [2, 1]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_a_reference_that_is_the_output_folder_is_refused_and_left_untouched(
        reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """Before: the report overwrote the reference, then checked the run against itself (always
    'within') and the old reference was gone."""
    realistic(tmp_path / "run")
    out = tmp_path / "out"
    ref = out if where == "same" else out / "old"
    ref.mkdir(parents=True)
    seeds = pd.read_csv(reference / "seeds.csv")
    seeds["top1"] = (seeds["top1"] - 5).clip(lower=0)  # another result: the check would flag it
    seeds.to_csv(ref / "seeds.csv", index=False)
    before = {p.name: p.read_bytes() for p in ref.iterdir()}
    assert main(["report", str(tmp_path / "run"), "--out", str(out), "--reference", str(ref)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the report's output folder" in err, err
    assert {p.name: p.read_bytes() for p in ref.iterdir()} == before


def test_a_reference_containing_the_output_folder_is_read_before_the_report_is_written(
        reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reference holds the output folder: it is read whole first, so the check compares the
    run with the reference's numbers, not with what the report just wrote."""
    realistic(tmp_path / "run")
    ref = tmp_path / "ref"
    ref.mkdir()
    seeds = pd.read_csv(reference / "seeds.csv")
    seeds["top1"] = (seeds["top1"] - 10).clip(lower=0)
    seeds.to_csv(ref / "seeds.csv", index=False)
    assert main(["report", str(tmp_path / "run"), "--out", str(ref / "report"), "--reference", str(ref)]) == 0
    assert "outside: " in capsys.readouterr().out


@pytest.mark.parametrize(("body", "row"), [("recipe,4.0,inf,10\n", "row 1 (line 2)"),
                                           ("recipe,4.0,100,10\nrecipe,4.0,12.5%,10\n", "row 2 (line 3)"),
                                           ("recipe,4.0,100,-3\n", "row 1 (line 2)")])
def test_bench_table_rows_are_validated_by_the_same_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           body: str, row: str) -> None:
    """bench.csv is user-editable too: the report reads it through modernize.csvtable (a re-run of
    bench appends rows, so a repeated step is allowed; a non-number is not)."""
    realistic(tmp_path / "run")
    (tmp_path / "run" / "bench.csv").write_text("step,gmacs,infer_img_s,train_img_s\n" + body)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"bench.csv: {row}" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("edit", "row"), [(("78.82", "78.82%"), "row 2 (line 3)"),
                                           (("79.36", "nan"), "row 3 (line 4)"),
                                           (("stage_ratio,", "recipe,"), "row 2 (line 3) and row 3 (line 4)")])
def test_a_paper_table_is_validated_by_the_same_reader(tmp_path: Path, edit: tuple[str, str], row: str) -> None:
    from modernize.paths import ablations_dir
    from modernize.roadmap import load_roadmap

    text = (ablations_dir() / "paper" / "paper_roadmap_r50.csv").read_text()
    (tmp_path / "paper.csv").write_text(text.replace(*edit, 1))
    (tmp_path / "rm.toml").write_text('name = "p"\npaper = "paper.csv"\n[[steps]]\nname = "resnet50"\n'
                                      'paper_row = "resnet50"\n')
    with pytest.raises(ConfigError) as err:
        load_roadmap(tmp_path / "rm.toml")
    assert str(err.value).startswith(f"{tmp_path / 'paper.csv'}: {row}"), err.value


def test_a_written_report_table_is_validated_by_the_same_reader(reference: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`report --page-only` of a folder written before report.json migrates it from its (editable)
    table.csv: the same validator."""
    table = pd.read_csv(reference / "table.csv")
    table["top1_mean"] = table["top1_mean"].astype(object)
    table.loc[2, "top1_mean"] = "inf"
    shutil.copytree(reference, tmp_path / "rep")
    table.to_csv(tmp_path / "rep" / "table.csv", index=False)
    (tmp_path / "rep" / "report.json").unlink(missing_ok=True)
    assert main(["report", str(tmp_path / "rep"), "--page-only"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "table.csv: row 3 (line 4): top1_mean = 'inf'" in err, err
