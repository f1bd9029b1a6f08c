"""The reproduction check: a run against a reference report, step by step, within the
reference's seed spread. It must flag a shifted step and pass an unshifted one; the main job
and every default output leave a checkout's reports/ untouched."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import realistic  # noqa: E402

from modernize import paths  # noqa: E402
from modernize.cli import main  # noqa: E402
from modernize.errors import ConfigError  # noqa: E402
from modernize.reference import K_SIGMA, check_reproduction, pooled_spread, read_reference  # noqa: E402
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
    (tmp_path / "ref" / "seeds.csv").write_text("step,seed,top1\nresnet50,0,abc\nrecipe,0,75.0\n")
    assert main(["report", str(tmp_path / "run"), "--reference", str(tmp_path / "ref")]) == 2
    assert "no step has two or more seeds" in capsys.readouterr().err
    assert not (tmp_path / "run" / "report").exists()
