"""Honest paper columns and errors before work (issue 21, deliverables 4 and 5): paper deltas
and verdicts only where a step's parent is the paper's parent; no paper sections without paper
numbers; the header names only proxy rules that touch a step; shipped paper tables by name; a
spec that the proxy breaks is refused before any job starts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from modernize.checks.fidelity import ORDER_NA, paper_parents
from modernize.cli import main
from modernize.errors import ConfigError
from modernize.report import analyze, build_report, load_run, summarize
from modernize.roadmap import load_roadmap
from modernize.runfolder import read_run_meta, write_run_meta
from tests.report_fixture import make_run

PAPER_R50 = Path(__file__).resolve().parent.parent / "ablations" / "paper" / "paper_roadmap_r50.csv"

REORDERED = """name = "reordered"
base = "resnet50"
paper = "r50"
[[steps]]
name = "resnet50"
paper_row = "resnet50"
[[steps]]
name = "recipe"
paper_row = "recipe"
[[steps]]
name = "stage_ratio"
paper_row = "stage_ratio"
apply = { transform = "stage_ratio", depths = [3, 3, 9, 3] }
[[steps]]
name = "patchify_stem"
paper_row = "patchify_stem"
apply = "patchify_stem"
[[steps]]
name = "widen"          # the paper widens after depthwise: swapped here
paper_row = "widen"
apply = { transform = "widen", width = 96 }
[[steps]]
name = "depthwise"
paper_row = "depthwise"
apply = "depthwise"
"""

NO_PAPER = """name = "own"
base = "resnet50"
[[steps]]
name = "start"
[[steps]]
name = "deeper"
apply = { transform = "stage_ratio", depths = [3, 3, 9, 3] }
"""


def _roadmap(folder: Path, text: str, name: str = "rm.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_reordered_roadmap_shows_na_where_the_parent_differs(tmp_path: Path) -> None:
    rm = _roadmap(tmp_path / "mine", REORDERED)
    make_run(tmp_path / "run", roadmap=str(rm), seeds=(0, 1), epochs=1)
    table = summarize(load_run(tmp_path / "run")).set_index("step")
    for step, paper_delta in (("recipe", 78.82 - 76.13), ("stage_ratio", 79.36 - 78.82),
                              ("patchify_stem", 79.51 - 79.36)):
        assert table.loc[step, "paper_delta"] == pytest.approx(paper_delta)
        assert table.loc[step, "paper_check"] != ORDER_NA
    for step in ("widen", "depthwise"):  # measured from a parent the paper never measured them from
        assert math.isnan(table.loc[step, "paper_delta"]) and table.loc[step, "paper_check"] == ORDER_NA
        assert table.loc[step, "paper_top1"] > 0  # the paper's own number is still shown
    build_report(tmp_path / "run", tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text()
    widen = next(line for line in md.splitlines() if line.startswith("| widen "))
    assert "n/a (order differs from the paper)" in widen and "+2.22" not in widen
    assert "| widen |" not in (tmp_path / "out" / "agreement.md").read_text()  # no verdict for it


def test_builtin_roadmap_keeps_every_paper_delta(tmp_path: Path) -> None:
    make_run(tmp_path / "run", seeds=(0, 1), epochs=1)
    table = summarize(load_run(tmp_path / "run"))
    assert not (table["paper_check"] == ORDER_NA).any()
    assert table["paper_delta"].notna().sum() == len(table) - 1  # every step but the first
    assert paper_parents(PAPER_R50)["kernel_9"] == "move_up_dwconv"  # the paper's branches, not the csv's order


def test_paper_order_of_a_table_no_builtin_uses(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text("row,paper_top1,adopted\na,70,yes\nb,71,no\nc,72,yes\nd,73,yes\n")
    assert paper_parents(csv) == {"a": None, "b": "a", "c": "a", "d": "c"}


def test_no_paper_numbers_no_paper_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path / "run", roadmap=str(_roadmap(tmp_path, NO_PAPER)), seeds=(0, 1), epochs=1)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "paper checks: none (this roadmap has no paper numbers)" in said and "Robust" not in said
    md = (tmp_path / "out" / "table.md").read_text()
    assert "paper top-1" not in md and "Robust steps" not in md and "0 of 0" not in md
    assert "no paper numbers" in (tmp_path / "out" / "agreement.md").read_text()


@pytest.mark.parametrize("steps, named", [(NO_PAPER, False), (None, True)])
def test_header_names_only_proxy_rules_that_touch_a_step(tmp_path: Path, steps: str | None, named: bool) -> None:
    roadmap = str(_roadmap(tmp_path, steps)) if steps else "resnet50_to_convnext_t"  # the latter has layer scale
    make_run(tmp_path / "run", roadmap=roadmap, seeds=(0,), epochs=1)
    meta = read_run_meta(tmp_path / "run")
    meta["proxy"] = {"width": 0.25, "depth": 1.0, "stem_stride": None, "init": "paper", "layer_scale": 1.0}
    write_run_meta(tmp_path / "run", meta)
    build_report(tmp_path / "run", tmp_path / "out")
    header = (tmp_path / "out" / "table.md").read_text().splitlines()[2]
    assert "width 0.25" in header and "depth" not in header
    assert ("layer scale init 1.0" in header) == named


@pytest.mark.parametrize("value", ["r50", "paper_roadmap_r50", str(PAPER_R50)])
def test_shipped_paper_table_by_name_from_any_folder(tmp_path: Path, value: str) -> None:
    text = (Path(__file__).resolve().parent.parent / "ablations" / "resnet50_to_convnext_t.toml").read_text()
    text = text.replace('paper = "paper/paper_roadmap_r50.csv"', f'paper = "{value}"')
    copied = _roadmap(tmp_path / "elsewhere", text)
    rm, builtin = load_roadmap(copied), load_roadmap(None)
    assert rm.paper_path == builtin.paper_path and rm["widen"].paper == builtin["widen"].paper


def test_unknown_paper_name_lists_the_shipped_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"paper = 'r51': no shipped paper table.*shipped: r200, r50"):
        load_roadmap(_roadmap(tmp_path, NO_PAPER.replace('base = "resnet50"', 'base = "resnet50"\npaper = "r51"')))


GROUPED = """name = "grouped"
base = { from = "resnet50", groups = 32 }
[[steps]]
name = "grouped50"
"""


def test_spec_the_proxy_breaks_is_refused_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rm = _roadmap(tmp_path, GROUPED)
    out = tmp_path / "run"
    assert main(["train", str(rm), "--data", "synthetic:32", "--proxy", "fidelity32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"{rm}: step 'grouped50' is invalid under proxy fidelity32: spec field 'groups': 32 does not divide "
            "the kxk conv's 16 channels") in err
    assert not out.exists()  # no run folder, no job folder
    assert main(["flops", str(rm), "--proxy", "fidelity32", "--out", str(tmp_path / "f")]) == 2
    assert "step 'grouped50' is invalid under proxy fidelity32" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
def test_flops_under_a_proxy_counts_the_proxy_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rm = _roadmap(tmp_path, NO_PAPER)
    assert main(["flops", str(rm), "--resolution", "32", "--out", str(tmp_path / "full")]) == 0
    assert main(["flops", str(rm), "--resolution", "32", "--proxy", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert "valid under proxy cpu" in capsys.readouterr().out
    full = (tmp_path / "full" / "flops.csv").read_text().splitlines()[1].split(",")
    small = (tmp_path / "cpu" / "flops.csv").read_text().splitlines()[1].split(",")
    assert float(small[4]) < float(full[4]) / 4  # gmacs: a quarter of the width, a third of the depth


def test_a_copy_of_the_paper_table_keeps_the_paper_branches(tmp_path: Path) -> None:
    """A roadmap in another checkout (or a run folder moved between machines) names a copy of the
    paper table: the kernel branches must still be measured from the paper's parent, not be n/a."""
    from modernize.checks.fidelity import paper_parents
    from modernize.paths import ablations_dir

    shipped = ablations_dir() / "paper" / "paper_roadmap_r50.csv"
    copy = tmp_path / "elsewhere" / "paper_roadmap_r50.csv"
    copy.parent.mkdir()
    copy.write_bytes(shipped.read_bytes())
    assert paper_parents(copy) == paper_parents(shipped)
    assert paper_parents(copy)["kernel_9"] == "move_up_dwconv"


BUILTIN = (Path(__file__).resolve().parent.parent / "ablations" / "resnet50_to_convnext_t.toml").read_text()
INSERTED = BUILTIN.replace('paper = "paper/paper_roadmap_r50.csv"', 'paper = "r50"').replace(
    '[[steps]]\nname = "depthwise"',
    '[[steps]]\nname = "act"          # a user step: SiLU before depthwise (not in the paper)\n'
    'apply = { transform = "act", kind = "silu" }\n\n'
    '[[steps]]\nname = "depthwise"')
MODIFIED = BUILTIN.replace('paper = "paper/paper_roadmap_r50.csv"', 'paper = "r50"').replace(
    'apply = { transform = "widen", width = 96 }', 'apply = { transform = "widen", width = 128 }')
AFTER_DEPTHWISE = ("widen", "inverted_bottleneck", "move_up_dwconv", "kernel_5", "kernel_7", "kernel_9", "kernel_11",
                   "gelu")
"""The steps whose parent carries the user's SiLU. From fewer_activations on the specs are the
paper's again (gelu replaced the SiLU): by content, those steps measure the paper's change."""
AFTER_GELU = ("fewer_activations", "fewer_norms", "bn_to_ln", "separate_downsampling")


def test_a_user_step_before_depthwise_makes_every_later_step_na(tmp_path: Path) -> None:
    """Before: only the parent's paper_row name was compared, so widen, inverted_bottleneck,
    kernel_7, ... kept robust/equivalence verdicts (and counted) on specs the paper never built."""
    from modernize.checks.fidelity import paper_matches

    rm = _roadmap(tmp_path / "mine", INSERTED)
    reasons = paper_matches(load_roadmap(rm))
    assert reasons["depthwise"] == "changed by user step act"
    assert {s: reasons[s] for s in AFTER_DEPTHWISE} == dict.fromkeys(AFTER_DEPTHWISE, "changed by user step act")
    assert all(reasons[s] == "" for s in ("recipe", "stage_ratio", "patchify_stem", *AFTER_GELU))
    make_run(tmp_path / "run", roadmap=str(rm), seeds=(0, 1), epochs=1)
    found = analyze(load_run(tmp_path / "run"))
    table = found.frame().set_index("step")
    for step in ("depthwise", *AFTER_DEPTHWISE):
        assert table.loc[step, "paper_check"] == "n/a (changed by user step act)", step
        assert math.isnan(table.loc[step, "paper_delta"])
    checked = {c.step for c in found.fidelity.checks}
    assert checked == {"recipe", "stage_ratio", "patchify_stem", *AFTER_GELU}  # only these count in the totals
    assert found.fidelity.robust == 4 and {c.step for c in found.fidelity.not_checked} >= set(AFTER_DEPTHWISE)
    build_report(tmp_path / "run", tmp_path / "out")
    agreement_md = (tmp_path / "out" / "agreement.md").read_text()
    assert "| widen |" not in agreement_md and "widen (changed by user step act)" in agreement_md
    assert "of 4 agree" in agreement_md


def test_a_paper_step_with_another_spec_is_na_and_so_is_what_follows(tmp_path: Path) -> None:
    from modernize.checks.fidelity import SPEC_DIFFERS, paper_matches

    reasons = paper_matches(load_roadmap(_roadmap(tmp_path, MODIFIED)))
    assert reasons["widen"] == SPEC_DIFFERS and reasons["depthwise"] == ""
    assert reasons["inverted_bottleneck"] == "changed by step widen, whose spec differs from the paper's"
    assert reasons["separate_downsampling"] == reasons["inverted_bottleneck"]


@pytest.mark.parametrize("preset", [None, "cpu", "fidelity32"])
def test_the_builtin_roadmaps_match_the_paper_under_every_proxy(preset: str | None) -> None:
    from modernize.checks.fidelity import paper_matches
    from modernize.proxy import PROXIES

    for name in ("resnet50_to_convnext_t", "resnet200_to_convnext_b"):
        reasons = paper_matches(load_roadmap(name), PROXIES[preset] if preset else None)
        assert reasons and set(reasons.values()) == {""}, (name, reasons)


def test_the_same_spec_under_another_name_still_measures_the_paper(tmp_path: Path) -> None:
    """Content, not names: a renamed no-op user step between two paper steps changes nothing."""
    from modernize.checks.fidelity import paper_matches

    text = BUILTIN.replace('paper = "paper/paper_roadmap_r50.csv"', 'paper = "r50"').replace(
        '[[steps]]\nname = "depthwise"', '[[steps]]\nname = "note"\nchange = "a checkpoint, no change"\n\n'
        '[[steps]]\nname = "depthwise"')
    reasons = paper_matches(load_roadmap(_roadmap(tmp_path, text)))
    assert set(reasons.values()) == {""}


def test_the_report_says_what_each_test_checks(tmp_path: Path) -> None:
    """Before: "within noise: yes (p=0.07)" sat next to "equivalence: fails" with no word on the
    two tests; now each test's sentence (fidelity.TEST_SENTENCES) is in the report."""
    from modernize.checks.fidelity import TEST_SENTENCES

    make_run(tmp_path / "run", seeds=(0, 1), epochs=1)
    build_report(tmp_path / "run", tmp_path / "out")
    text = (tmp_path / "out" / "agreement.md").read_text()
    assert all(t in text for t in TEST_SENTENCES)


def test_a_run_on_a_tiny_evaluation_set_is_inconclusive_in_the_report(tmp_path: Path) -> None:
    make_run(tmp_path / "run", seeds=(0, 1, 2), epochs=1)
    meta = read_run_meta(tmp_path / "run")
    meta["recipe"]["values"]["val_images"] = 50
    write_run_meta(tmp_path / "run", meta)
    found = analyze(load_run(tmp_path / "run"))
    assert found.fidelity.checks and {c.verdict for c in found.fidelity.checks} == {"inconclusive"}
    assert all("scored on 50 images" in c.why for c in found.fidelity.checks)
