"""Reports from fixture runs: every number equals its input, images are valid and sized,
the agreement summary is right on a hand-made case, bad input is one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixture import make_run, realistic, small_roadmap  # noqa: E402

from modernize.checks.stats import spearman, t_two_sided_p, welch_p  # noqa: E402
from modernize.cli import main  # noqa: E402
from modernize.errors import ConfigError  # noqa: E402
from modernize.report import (  # noqa: E402
    ACC_VS_GMACS_SIZE,
    DPI,
    NOISE_ALPHA,
    agreement,
    build_report,
    curves_figsize,
    load_run,
    roadmap_figsize,
    summarize,
)
from modernize.roadmap import load_roadmap  # noqa: E402
from modernize.runfolder import read_run_meta, write_run_meta  # noqa: E402

R50 = load_roadmap("resnet50_to_convnext_t")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[Path]]:
    root = tmp_path_factory.mktemp("report")
    truth = realistic(root / "run")
    paths = build_report(root / "run", root / "out")
    return root, truth, paths


def test_writes_every_output(built) -> None:
    root, _, paths = built
    names = sorted(p.name for p in paths)
    assert names == sorted(["report.json", "table.md", "table.csv", "table.tex", "seeds.csv", "agreement.md",
                            "roadmap.png", "roadmap.svg",
                            "acc_vs_gmacs.png", "curves.png", "index.html"])
    assert all(p.parent == root / "out" and p.stat().st_size > 0 for p in paths)
    assert not list((root / "out").glob(".*.tmp"))  # atomic writes leave no temp files


def test_default_out_is_run_dir_report(tmp_path: Path) -> None:
    make_run(tmp_path / "run", roadmap=str(small_roadmap(tmp_path)), seeds=(0,), epochs=2)
    paths = build_report(tmp_path / "run")
    assert {p.parent for p in paths} == {tmp_path / "run" / "report"}


def test_table_numbers_equal_inputs(built) -> None:
    root, truth, _ = built
    table = pd.read_csv(root / "out" / "table.csv", keep_default_na=True)
    assert list(table["step"]) == R50.names  # every step, roadmap order, none dropped
    by = table.set_index("step")
    for step in R50:
        row = by.loc[step.name]
        values = list(truth.get(step.name, {}).values())
        assert row["n"] == len(values)
        assert row["seeds"] == 3
        if values:
            assert row["top1_mean"] == pytest.approx(statistics.mean(values), abs=1e-4)
        if len(values) >= 2:
            assert row["top1_std"] == pytest.approx(statistics.stdev(values), abs=1e-4)
        else:
            assert math.isnan(row["top1_std"])
        assert row["paper_top1"] == pytest.approx(float(step.paper["paper_top1"]))
        assert row["paper_gflops"] == pytest.approx(float(step.paper["paper_gflops"]))
        if step.parent:
            parent = by.loc[step.parent]
            assert row["paper_delta"] == pytest.approx(row["paper_top1"] - parent["paper_top1"], abs=1e-6)
            if values and truth.get(step.parent):
                expect = statistics.mean(values) - statistics.mean(truth[step.parent].values())
                assert row["delta"] == pytest.approx(expect, abs=1e-4)
            else:
                assert math.isnan(row["delta"])
    # results.json inputs travel unchanged
    res = json.loads((root / "run" / "widen" / "seed1" / "result.json").read_text())
    assert by.loc["widen", "gmacs"] == pytest.approx(res["gmacs"])
    assert by.loc["widen", "params_m"] == pytest.approx(res["params_m"])
    assert by.loc["widen", "resolution"] == res["resolution"]
    assert by.loc["widen", "infer_img_s"] == pytest.approx(4000 - 90 * R50.names.index("widen"))


def test_failed_missing_and_partial_rows(built) -> None:
    root, truth, _ = built
    by = pd.read_csv(root / "out" / "table.csv").set_index("step")
    assert by.loc["kernel_11", "status"] == "failed (epoch 4: loss is NaN at epoch 4)"
    assert by.loc["kernel_9", "status"] == "missing"
    assert by.loc["gelu", "status"] == "partial" and by.loc["gelu", "n"] == 2
    assert "seed 2 missing" in by.loc["gelu", "note"]
    md = (root / "out" / "table.md").read_text()
    assert "failed (epoch 4: loss is NaN at epoch 4)" in md
    assert "| missing" in md
    gelu = list(truth["gelu"].values())
    assert f"{statistics.mean(gelu):.2f} ± {statistics.stdev(gelu):.2f} (n=2/3)" in md
    tex = (root / "out" / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\bottomrule" in tex and "kernel\\_11" in tex


def test_markdown_shows_every_input_rounded(built) -> None:
    root, truth, _ = built
    md = (root / "out" / "table.md").read_text()
    main_table = md.split("\n## ")[0]  # the ablation table; the paper checks follow under their own heading
    rows = {line.split("|")[1].strip(): line for line in main_table.splitlines() if line.startswith("| ")}
    for step, seeds in truth.items():
        if len(seeds) == 3:
            v = list(seeds.values())
            assert f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} (n=3)" in rows[step]
        assert f"{float(R50[step].paper['paper_top1']):.2f}" in rows[step]


def test_noise_rule_is_welch(built) -> None:
    root, truth, _ = built
    by = pd.read_csv(root / "out" / "table.csv", na_values=[""], keep_default_na=False).set_index("step")
    for step in R50:
        a, b = list(truth.get(step.name, {}).values()), list(truth.get(step.parent or "", {}).values())
        if len(a) >= 2 and len(b) >= 2:
            p = welch_p(statistics.mean(a), statistics.stdev(a), len(a),
                        statistics.mean(b), statistics.stdev(b), len(b))
            assert by.loc[step.name, "p_value"] == pytest.approx(p, rel=1e-4)
            assert by.loc[step.name, "within_noise"] == ("yes" if p > NOISE_ALPHA else "no")
        else:
            assert by.loc[step.name, "within_noise"] == "n/a"


def test_welch_and_t_against_reference_values() -> None:
    # Reference values from scipy.stats (t.sf, ttest_ind_from_stats(equal_var=False), spearmanr).
    assert t_two_sided_p(2.0, 10) == pytest.approx(0.07338803477074037, rel=1e-9)
    assert t_two_sided_p(-1.7, 4.5) == pytest.approx(0.15635391213589792, rel=1e-9)
    assert welch_p(80.1, 0.2, 3, 79.8, 0.1, 3) == pytest.approx(0.10447888668472397, rel=1e-9)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681234, rel=1e-9)
    assert welch_p(1.0, 0.0, 2, 1.0, 0.0, 2) == 1.0 and welch_p(1.0, 0.0, 2, 2.0, 0.0, 2) == 0.0


def test_single_seed_marks_noise_na(tmp_path: Path) -> None:
    make_run(tmp_path / "run", seeds=(7,), epochs=2)
    table = summarize(load_run(tmp_path / "run"))
    assert (table["within_noise"] == "n/a").all()
    assert table["top1_std"].isna().all() and (table["n"] == 1).all()


def test_agreement_hand_made_case(tmp_path: Path) -> None:
    # Paper (R50 CSV) top-1 along resnet50 -> recipe -> stage_ratio -> patchify_stem -> depthwise:
    # 76.13, 78.82 (+), 79.36 (+), 79.51 (+), 78.28 (-). Ours below: +, -, +, -  => 3 of 4 signs match
    # (stage_ratio is the mismatch). Ranks: ours 1,4,3,5,2 vs paper 1,3,4,5,2 -> rho = 0.9.
    steps = ["resnet50", "recipe", "stage_ratio", "patchify_stem", "depthwise"]
    ours = {"resnet50": [90.0, 90.2], "recipe": [91.0, 91.2], "stage_ratio": [90.8, 91.0],
            "patchify_stem": [91.5, 91.7], "depthwise": [90.5, 90.7]}
    make_run(tmp_path / "run", seeds=(0, 1), epochs=2, top1=ours,
             missing_steps=tuple(s for s in R50.names if s not in steps))
    out = tmp_path / "out"
    build_report(tmp_path / "run", out)
    table = pd.read_csv(out / "table.csv")
    agr = agreement(table)
    assert (agr.compared, agr.sign_matches, agr.mismatches) == (4, 3, ("stage_ratio",))
    assert agr.ranked == 5
    assert agr.spearman == pytest.approx(0.9)
    text = (out / "agreement.md").read_text()
    assert "3 of 4 steps" in text and "+0.900" in text and "stage_ratio" in text
    assert "3 of 4 steps" in (out / "table.md").read_text()
    # Paper checks: 2 SE = 2 * sqrt(0.02/2 + 0.02/2) = 0.28. recipe +1.0 and depthwise -1.0 agree with the
    # paper's robust signs, stage_ratio -0.2 is inconclusive; patchify_stem (+0.7, 95 % interval [+0.09, +1.31]
    # crossing the +-0.5 margin) is an inconclusive equivalence
    # check; the five robust steps without data are inconclusive.
    checks = dict(zip(table["step"], table["paper_check"]))
    assert checks["recipe"] == "robust: agrees" and checks["depthwise"] == "robust: agrees"
    assert checks["stage_ratio"] == "robust: inconclusive"
    assert checks["patchify_stem"] == "equivalence: inconclusive"
    assert "**2 of 8 agree**" in text


def test_images_valid_and_sized(built) -> None:
    root, _, _ = built
    n = len(R50)
    w, h = roadmap_figsize(n)
    assert png_size(root / "out" / "roadmap.png") == (round(w * DPI), round(h * DPI))
    assert png_size(root / "out" / "acc_vs_gmacs.png") == (round(ACC_VS_GMACS_SIZE[0] * DPI),
                                                            round(ACC_VS_GMACS_SIZE[1] * DPI))
    cw, ch = curves_figsize(n)
    assert png_size(root / "out" / "curves.png") == (round(cw * DPI), round(ch * DPI))
    svg = ET.parse(root / "out" / "roadmap.svg").getroot()
    assert svg.tag.endswith("svg")
    assert svg.get("width") == f"{w * 72:g}pt" and svg.get("height") == f"{h * 72:g}pt"
    assert "kernel_11" in (root / "out" / "roadmap.svg").read_text()


def test_run_json_recipe_proxy_and_steps_are_shown(tmp_path: Path) -> None:
    roadmap = small_roadmap(tmp_path)
    make_run(tmp_path / "run", roadmap=str(roadmap), seeds=(0,), epochs=2)
    meta = read_run_meta(tmp_path / "run")
    meta.update(recipe={"name": "quick", "values": {"lr": 1}}, proxy={"width": 0.25, "depth": 0.34, "stem_stride": 2,
                                                                    "init": "width", "layer_scale": 1.0},
                steps=["resnet50"])
    write_run_meta(tmp_path / "run", meta)
    table = summarize(load_run(tmp_path / "run"))
    assert list(table["step"]) == ["resnet50", "stage_ratio", "depthwise", "patchify_stem"]
    assert (table["status"] == "done").all()  # results exist: "steps" only explains absent ones
    for step in ("depthwise", "patchify_stem"):
        shutil.rmtree(tmp_path / "run" / step)
    table = summarize(load_run(tmp_path / "run"))
    assert list(table["status"])[2:] == ["missing (not in this run's steps)"] * 2
    build_report(tmp_path / "run", tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text()
    assert "recipe `quick`" in md and "proxy scale width 0.25, depth 0.34, stem_stride 2, init width" in md
    assert "layer scale init" not in md  # no step of this roadmap has a layer scale (tests/test_paper_columns.py)


def test_bench_is_optional(tmp_path: Path) -> None:
    make_run(tmp_path / "run", roadmap=str(small_roadmap(tmp_path)), seeds=(0,), epochs=2)
    build_report(tmp_path / "run", tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text()
    assert "img/s" not in md


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path / "run", roadmap=str(small_roadmap(tmp_path)), seeds=(0, 1), epochs=2,
             failed={"stage_ratio": 2})
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "failed (epoch 2" in out and "paper checks: robust steps" in out
    assert (tmp_path / "o" / "roadmap.svg").is_file()


@pytest.mark.parametrize("breakage, message", [
    ("no_run_json", "run.json"),
    ("bad_seeds", "'seeds' must be a non-empty list"),
    ("bad_roadmap", "is not a built-in roadmap"),
    ("older_run_json", "'roadmap' must be {"),
    ("bad_status", "'status' must be done, failed or running"),
    ("torn_result", "cannot read result.json"),
])
def test_bad_run_dir_is_one_line_error_and_writes_nothing(tmp_path: Path, capsys, breakage: str, message: str) -> None:
    run = tmp_path / "run"
    make_run(run, roadmap=str(small_roadmap(tmp_path)), seeds=(0,), epochs=2)
    meta = json.loads((run / "run.json").read_text())
    if breakage == "no_run_json":
        (run / "run.json").unlink()
    elif breakage == "bad_seeds":
        meta["seeds"] = "0,1"
        (run / "run.json").write_text(json.dumps(meta))
    elif breakage == "bad_roadmap":
        meta.update(roadmap={"name": "nope", "path": "/nope.toml"})
        (run / "run.json").write_text(json.dumps(meta))
    elif breakage == "older_run_json":  # roadmap as a bare path string: no longer read
        meta.update(roadmap="/nope.toml")
        (run / "run.json").write_text(json.dumps(meta))
    elif breakage == "bad_status":
        (run / "depthwise" / "seed0" / "result.json").write_text(json.dumps({"status": "finished"}))
    else:
        (run / "depthwise" / "seed0" / "result.json").write_text('{"status": "do')
    with pytest.raises(ConfigError, match=message):
        build_report(run, tmp_path / "out")
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "out").exists()


def test_bench_of_other_models_is_not_shown(tmp_path: Path) -> None:
    """A bench of the full-size 224-px models must not sit beside a 32-px proxy run."""
    make_run(tmp_path / "run", roadmap=str(small_roadmap(tmp_path)), seeds=(0,), epochs=2, bench=True)
    bench = tmp_path / "run" / "bench.csv"
    build_report(tmp_path / "run", tmp_path / "same")
    assert "img/s" in (tmp_path / "same" / "table.md").read_text()
    lines = bench.read_text().splitlines()
    bench.write_text("\n".join([lines[0] + ",gmacs"] + [line + ",4.09" for line in lines[1:]]) + "\n")
    build_report(tmp_path / "run", tmp_path / "other")
    assert "img/s" not in (tmp_path / "other" / "table.md").read_text()


# --- the record: report.json and everything rendered from it ----------------------------------------

RENDERED = ("table.csv", "seeds.csv", "table.md", "table.tex", "agreement.md", "index.html")


def test_page_only_renders_everything_from_report_json_alone(built, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A folder holding only report.json (no run, no table, no figure) gets the same report back."""
    root, _, _ = built
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(root / "out" / "report.json", alone / "report.json")
    assert main(["report", str(alone), "--page-only"]) == 0
    assert "index.html" in capsys.readouterr().out
    for name in RENDERED + ("roadmap.svg", "curves.png", "acc_vs_gmacs.png"):
        assert (alone / name).read_bytes() == (root / "out" / name).read_bytes(), name
    assert sorted(p.name for p in (alone / "blocks").iterdir()) == sorted(p.name for p in (root / "out" / "blocks")
                                                                          .iterdir())


def test_report_json_is_typed_and_versioned(built) -> None:
    from modernize.report import ReportRecord, Status

    root, truth, _ = built
    data = json.loads((root / "out" / "report.json").read_text())
    assert data["schema"] == 1 and data["run"]["proxy"] == read_run_meta(root / "run").get("proxy", {})
    record = ReportRecord.from_json((root / "out" / "report.json").read_text())
    rows = {r.step: r for r in record.rows}
    assert rows["kernel_11"].status is Status.FAILED and rows["kernel_11"].status_reason.startswith("epoch 4")
    assert rows["kernel_9"].status is Status.MISSING and rows["gelu"].status is Status.PARTIAL
    assert rows["recipe"].top1_mean == pytest.approx(statistics.mean(truth["recipe"].values()))
    assert record.frame().equals(summarize(load_run(root / "run")))


def test_a_report_json_of_another_schema_is_one_line(built, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _ = built
    (tmp_path / "report.json").write_text((root / "out" / "report.json").read_text().replace(
        '"schema": 1', '"schema": 99', 1))
    assert main(["report", str(tmp_path), "--page-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "report.json" in err and "schema 99" in err
    assert not (tmp_path / "table.csv").exists()


def test_one_rounding_in_every_rendering(tmp_path: Path) -> None:
    """73.32 and 72.77 average to the float 73.04499...: table.csv says 73.045, and the table,
    the step's section of the page, the LaTeX and the figure's text all say 73.05."""
    roadmap = str(small_roadmap(tmp_path))
    top1 = {"resnet50": [73.32, 72.77], "stage_ratio": [76.2, 76.7], "depthwise": [75.0, 75.1],
            "patchify_stem": [75.4, 75.5]}
    make_run(tmp_path / "run", roadmap=roadmap, seeds=(0, 1), epochs=1, top1=top1)
    build_report(tmp_path / "run", tmp_path / "out")
    out = tmp_path / "out"
    assert "73.045," in (out / "table.csv").read_text()
    assert "| 73.05 ± 0.39 (n=2)" in (out / "table.md").read_text()
    assert "73.05 $\\pm$ 0.39" in (out / "table.tex").read_text()
    page = (out / "index.html").read_text()
    assert "top-1 73.05 %" in page and ">73.05 ± 0.39 (n=2)<" in page and "73.04" not in page
    assert "73.04" not in (out / "roadmap.svg").read_text()


def test_old_report_folder_migrates_to_the_same_record(built, tmp_path: Path) -> None:
    """A report folder written before report.json reads back as the same rows and seeds."""
    from modernize.report.migrate import record_from_folder
    from modernize.report.record import ReportRecord

    root, _, _ = built
    record = ReportRecord.from_json((root / "out" / "report.json").read_text())
    old = tmp_path / "old"
    shutil.copytree(root / "out", old)
    (old / "report.json").unlink()
    migrated = record_from_folder(old)
    assert [(r.status, r.status_reason, r.paper_check) for r in migrated.rows] == \
        [(r.status, r.status_reason, r.paper_check) for r in record.rows]
    assert migrated.frame().to_csv(float_format="%.6g") == record.frame().to_csv(float_format="%.6g")
    assert migrated.seeds == record.seeds and migrated.run.proxy_in_use == record.run.proxy_in_use
    assert main(["report", str(old), "--page-only"]) == 0
    for name in ("table.csv", "seeds.csv"):
        assert (old / name).read_bytes() == (root / "out" / name).read_bytes(), name


def test_one_evaluation_per_job_draws_no_curves_and_removes_an_old_figure(tmp_path: Path) -> None:
    """A one-epoch run has one point per job: no curves figure (it would be panels without
    curves), and one left from an earlier report of the folder goes."""
    make_run(tmp_path / "run", roadmap=str(small_roadmap(tmp_path)), seeds=(0, 1), epochs=1)
    out = tmp_path / "run" / "report"
    out.mkdir(parents=True)
    (out / "curves.png").write_bytes(b"an old figure")
    paths = build_report(tmp_path / "run")
    assert not (out / "curves.png").exists() and out / "curves.png" not in paths
    assert (out / "roadmap.png").is_file()
