"""The report's HTML page: built from the report files (fresh run or committed folder), the
proxy as trained in its diagrams, and checked in headless Chromium at a phone's width."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from browser import check_page, chromium_paths  # noqa: E402
from report_fixture import make_run, small_roadmap  # noqa: E402

from modernize.cli import main  # noqa: E402
from modernize.fmt import fixed, gmacs  # noqa: E402
from modernize.proxy import FIDELITY32_PROXY, ProxyScale  # noqa: E402
from modernize.report import (
    build_report,  # noqa: E402
    figures,  # noqa: E402
)
from modernize.report.facts import proxy_scale  # noqa: E402
from modernize.report.migrate import proxy_from_run_line  # noqa: E402
from modernize.report.page import build_page, first_screen, markdown_html, proxy_study_link  # noqa: E402
from modernize.report.record import RECORD_FILE, ReportRecord  # noqa: E402
from modernize.roadmap import load_roadmap  # noqa: E402
from modernize.runfolder import read_run_meta, write_run_meta  # noqa: E402
from modernize.transforms import phase_of, reason_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["resnet50", "stage_ratio", "depthwise", "patchify_stem"]
IMAGES = 3 + 3 * len(STEPS) - 1  # per step: before, after (the first: one side), paper above proxy scale


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-step run trained (on paper) at the fidelity32 proxy, and its report."""
    root = tmp_path_factory.mktemp("page")
    make_run(root / "run", roadmap=str(small_roadmap(root)), seeds=(0, 1), epochs=3)
    meta = read_run_meta(root / "run")
    meta["proxy"] = FIDELITY32_PROXY.to_dict()
    write_run_meta(root / "run", meta)
    build_report(root / "run", root / "out")
    return root / "out"


def test_page_holds_everything_and_needs_no_network(small_report: Path) -> None:
    page = (small_report / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    # roadmap, curves, accuracy; per step its block before and after (the first step: one side)
    assert page.count("<img ") == IMAGES
    for step in STEPS:
        assert f'id="step-{step}"' in page and (small_report / "blocks" / f"{step}.svg").is_file()
    assert "Robust steps" in page and "paper check" in page


DATA_URI = re.compile(r"data:[^\"')\s]+")
MACHINE_PATH = re.compile(r"(?<![\w.])/(home|tmp|work|Users|root|var|mnt|private|opt|srv)/")


def machine_paths(folder: Path, *names: str, committed: bool = True) -> list[str]:
    """Every text file under ``folder`` naming one of ``names`` or an absolute folder of a machine
    (embedded pictures left out: base64 holds slashes); not ``committed``: report.json left out
    (it keeps the path of a roadmap file outside the working folder, to render again)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".html", ".md", ".csv", ".tex", ".json", ".svg", ".toml", ".txt") or \
                path.name == RECORD_FILE and not committed:
            continue
        text = DATA_URI.sub("", path.read_text(errors="replace"))
        hits = [n for n in names if n in text] + MACHINE_PATH.findall(text)
        found += [f"{path.relative_to(folder)}: {h}" for h in hits]
    return found


def test_no_machine_path_in_a_report(small_report: Path) -> None:
    """The run and its roadmap lie outside the working folder: no file of the report names them."""
    assert machine_paths(small_report, str(small_report.parent), str(ROOT), committed=False) == []
    assert "Run folder" not in (small_report / "table.md").read_text()
    record = ReportRecord.from_json((small_report / RECORD_FILE).read_text())
    assert record.run.run_dir == "" and record.run.roadmap_path == str(small_report.parent / "small.toml")
    text = (small_report / RECORD_FILE).read_text().replace(record.run.roadmap_path, "")
    assert str(small_report.parent) not in text and not MACHINE_PATH.search(text)


def test_no_machine_path_in_committed_reports() -> None:
    """What `report` writes for the committed reports (regenerated from their records)."""
    assert machine_paths(ROOT / "reports") == []


def _record(folder: Path) -> ReportRecord:
    return ReportRecord.from_json((folder / RECORD_FILE).read_text())


def test_first_screen_says_what_was_trained_and_the_result(small_report: Path) -> None:
    record = _record(small_report)
    page = (small_report / "index.html").read_text()
    first = page[page.index('<section class="first"'):page.index("</section>")]
    assert "4 networks, from <code>resnet50</code> to <code>patchify_stem</code>" in first
    assert "a quarter of the width and a third of the depth" in first
    assert "trained for 3 passes over all the Fashion-MNIST training images at 32 px, 2 seeds each" in first
    final, anchor, diff, lo, hi = record.fidelity.end_to_end
    assert f"top-1 changed by {fixed(diff, signed=True)} points" in first
    assert f"95 % interval {fixed(lo, signed=True)} to {fixed(hi, signed=True)}" in first
    assert "Directions only:" in first and "<details><summary>Settings" in first
    assert page.index('<section class="first"') < page.index("<img ")  # before any figure or table
    assert page.count("In short") == 1


def test_proxy_study_link_is_relative_inside_the_repository(tmp_path: Path) -> None:
    assert proxy_study_link(ROOT / "reports" / "resnet50_to_convnext_t") == \
        'the <a href="../proxy_study/README.md">proxy study</a>'
    assert (ROOT / "reports" / "resnet50_to_convnext_t" / "../proxy_study/README.md").is_file()
    elsewhere = proxy_study_link(tmp_path)
    assert "<a " not in elsewhere and "reports/proxy_study/README.md" in elsewhere


def test_steps_under_the_papers_phases(small_report: Path) -> None:
    """report.json carries each step's phase and reason; the page groups the steps under them."""
    record = _record(small_report)
    rows = {r.step: r for r in record.rows}
    assert rows["resnet50"].phase == "" and rows["resnet50"].reason == ""
    for step in ("stage_ratio", "depthwise", "patchify_stem"):
        phase = phase_of(step)
        assert phase is not None and rows[step].phase == phase.name and rows[step].reason == reason_of(step) != ""
    page = (small_report / "index.html").read_text()
    lesson = page[page.index('<table id="lesson">'):]
    lesson = lesson[:lesson.index("</table>")]
    macro, resnextify = lesson.index("Macro design (§2.2)"), lesson.index("ResNeXt-ify (§2.3)")
    # roadmap order: stage_ratio, depthwise (ResNeXt-ify), then patchify_stem opens macro design again
    assert lesson.index(">stage_ratio<") > macro and resnextify < lesson.index(">depthwise<")
    assert html_text(reason_of("depthwise")) in lesson


def html_text(text: str) -> str:
    import html

    return html.escape(text)


def test_curves_only_with_more_than_one_point(small_report: Path, tmp_path: Path) -> None:
    record = _record(small_report)
    assert record.has_curves and "Training curves: validation top-1 per epoch" in \
        (small_report / "index.html").read_text()
    import dataclasses

    one = dataclasses.replace(record, curves=tuple(dataclasses.replace(c, epoch=c.epoch[:1], top1=c.top1[:1])
                                                   for c in record.curves))
    folder = tmp_path / "one"
    shutil.copytree(small_report, folder)
    from modernize.report.page import roadmap_of

    page = build_page(one, folder, roadmap_of(one) if one.run.roadmap_path else load_roadmap(
        small_report.parent / "small.toml"), blocks=False)
    assert not one.has_curves and "Training curves: validation" not in page and "No training curves" in page


def test_first_screen_of_the_committed_reference() -> None:
    """The committed reference read through the migration: 17 networks, fidelity32 in words, the
    proxy study linked relatively."""
    from modernize.report.migrate import record_from_folder

    folder = ROOT / "reports" / "resnet50_to_convnext_t"
    record = record_from_folder(folder) if not (folder / RECORD_FILE).is_file() else _record(folder)
    first = first_screen(record, folder)
    assert "17 networks" in first and "a quarter of the width and a third of the depth" in first
    assert "trained once over 6,000 Fashion-MNIST training images at 32 px, 2 seeds each" in first
    assert 'href="../proxy_study/README.md"' in first


def test_figures_have_data_in_every_panel_and_readable_text(small_report: Path) -> None:
    """Every visible axes of every report figure draws data; no text under figures.MIN_FONT_PT."""
    plt = figures.pyplot()
    record = _record(small_report)
    for name in ("roadmap", "acc_vs_gmacs", "curves"):
        fig = getattr(figures, f"{name}_figure")(record)
        try:
            fig.canvas.draw()
            for ax in fig.axes:
                if ax.get_visible():
                    assert ax.lines or ax.patches or ax.collections, f"{name}: empty panel {ax.get_title()!r}"
            sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and
                                                           hasattr(a, "get_text") and a.get_visible())
                     if t.get_text().strip()]
            assert sizes and min(sizes) >= figures.MIN_FONT_PT, (name, min(sizes))
        finally:
            plt.close(fig)
    assert figures.min_display_px(7.5) == 600  # 9 pt in a 7.5 in figure shown 600 px wide: 10 px


def test_run_page_draws_the_proxy_it_trained(small_report: Path) -> None:
    svg = (small_report / "blocks" / "resnet50.svg").read_text()
    assert "proxy as trained: width ×0.25, depth ×0.34, stem stride 2" in svg
    assert "conv 1x1, 64→32" in svg and "256→128" not in svg  # width x0.25 of the paper's 256→128
    assert "32 px input" in svg


def test_page_from_committed_files(small_report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A report folder written before report.json, without its run, gets the same page from its files."""
    folder = tmp_path / "committed"
    shutil.copytree(small_report, folder)
    (folder / "report.json").unlink()
    (folder / "index.html").unlink()
    (folder / "blocks" / "depthwise.svg").unlink()
    (folder / "blocks" / "old_step.svg").write_text("<svg/>")  # a step no longer in the roadmap
    (folder / "table.md").write_text((folder / "table.md").read_text().replace(
        "# Ablation: small", f"# Ablation: {small_report.parent / 'small.toml'}"))
    assert main(["report", str(folder), "--page-only"]) == 0
    assert "index.html" in capsys.readouterr().out
    assert sorted(p.name for p in (folder / "blocks").iterdir()) == sorted(f"{s}.svg" for s in STEPS)
    svg = "blocks/depthwise.svg"
    assert (folder / svg).read_bytes() == (small_report / svg).read_bytes()  # the run line gives back the proxy
    assert main(["report", str(tmp_path / "nothing"), "--page-only"]) == 2


def test_proxy_from_the_committed_run_lines() -> None:
    for folder in ("resnet50_to_convnext_t", "study"):
        line = (ROOT / "reports" / folder / "table.md").read_text().splitlines()[2]
        assert proxy_scale(proxy_from_run_line(line)) == FIDELITY32_PROXY
    assert proxy_scale(proxy_from_run_line("Roadmap `x`, recipe `paper`, seeds 0. Run folder: `r`.")) == ProxyScale()


@pytest.mark.parametrize("folder", ["resnet50_to_convnext_t", "study"])
def test_committed_reports_have_their_page(folder: str) -> None:
    """`report --page-only` was run on the committed reports: a page, 17 diagrams, a screenshot."""
    path = ROOT / "reports" / folder
    page = (path / "index.html").read_text()
    names = load_roadmap("resnet50_to_convnext_t").names
    assert all(f'id="step-{n}"' in page for n in names) and page.count("<tr>") >= len(names)
    assert sorted(p.stem for p in (path / "blocks").glob("*.svg")) == sorted(names)
    assert (path / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "proxy as trained: width ×0.25" in (path / "blocks" / "widen.svg").read_text()


def test_markdown_subset() -> None:
    out = markdown_html("## Head\n\n- a **b** `c`\n- d\n\n| x | y |\n|---|--:|\n| 1 | <2> |\n\ntext")
    assert out.splitlines() == ["<h3>Head</h3>", "<ul><li>a <strong>b</strong> <code>c</code></li><li>d</li></ul>",
                                '<div class="box"><table><thead><tr><th scope="col">x</th><th scope="col">y</th>'
                                "</tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr></tbody></table></div>",
                                "<p>text</p>"]


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    paths, reason = chromium_paths()
    if paths is None:
        print(f"skipping the browser check: {reason}")
        pytest.skip(reason)
    return paths


def test_no_package_manager_gives_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import browser

    monkeypatch.setattr(browser, "_find", lambda: None)
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    assert browser.chromium_paths() == (None, "chromium is not installed and there is no apt-get to install it")


def page_column(row: dict, column: str) -> str:
    """A table.csv value as the page rounds it (the record's one formatter)."""
    if column.startswith("GMACs"):
        return gmacs(row["gmacs"])
    key, digits, signed = {"params (M)": ("params_m", 3, False), "delta": ("delta", 2, True),
                           "paper top-1": ("paper_top1", 2, False), "paper GFLOPs": ("paper_gflops", 2, False),
                           "top-1 (%)": ("top1_mean", 2, False)}[column]
    return fixed(row[key], digits, signed=signed)


NUMBER_COLUMNS = ("GMACs", "params (M)", "top-1 (%)", "delta", "paper top-1", "paper GFLOPs")


@pytest.mark.slow
@pytest.mark.parametrize("width", [390, 1280])
def test_page_in_headless_chromium(small_report: Path, chromium: tuple[str, str], tmp_path: Path,
                                   width: int) -> None:
    """At a phone's and a projector's width: loads clean, the result on the first screen, the
    step names in view while each table is scrolled sideways, figure text at least 10 px, the
    numbers of table.csv."""
    import pandas as pd

    shot = tmp_path / f"page-{width}px.png"
    result = check_page(chromium, small_report / "index.html", shot, width=width, sticky=("#lesson", "#ablation"),
                        scrolled_screenshot=tmp_path / f"page-{width}px-scrolled.png")
    print(f"screenshots: {shot}, {result.scrolled_screenshot}")
    assert result.console_errors == []
    assert result.images == IMAGES and result.broken_images == [] and result.images_without_alt == []
    assert result.table_rows == len(STEPS)
    assert result.scroll_width <= width
    assert 0 < result.result_bottom <= 844  # the main result is on the first screen
    for selector, (scrolled, left, right, viewport, text) in result.sticky.items():
        assert (scrolled > 0 or width > 390) and 0 <= left and right <= viewport and text == "resnet50", selector
    assert result.figure_text_px and min(px for _, px in result.figure_text_px) >= figures.MIN_TEXT_PX - 0.01
    csv = pd.read_csv(small_report / "table.csv").to_dict("records")
    page = (small_report / "index.html").read_text()
    head = re.findall(r'<th scope="col">([^<]*)</th>', page[page.index('<table id="ablation">'):])[:12]
    assert [row[0] for row in result.cells] == [r["step"] for r in csv]
    for cells, row in zip(result.cells, csv):
        for name, cell in zip(head, cells):
            if name.startswith(NUMBER_COLUMNS):
                assert cell.startswith(page_column(row, name)) if name == "top-1 (%)" else \
                    cell == page_column(row, name), (row["step"], name, cell)


@pytest.mark.slow
def test_the_browser_check_can_fail(chromium: tuple[str, str], tmp_path: Path) -> None:
    """The same checks on a page with a broken image, an image without alt, a script error and
    an element wider than a phone: each is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html lang="en"><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="missing.png" alt="gone"><img src="data:image/gif;base64,'
                   'R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==">'
                   '<div style="width:900px">wide</div><table id="ablation"><tbody><tr><td>1</td></tr></tbody>'
                   "</table><script>undefined_function()</script></body></html>")
    result = check_page(chromium, bad, tmp_path / "bad.png", width=390)
    assert len(result.broken_images) == 1 and result.broken_images[0].endswith("/missing.png")
    assert len(result.images_without_alt) == 1 and result.table_rows == 1
    assert result.scroll_width > 390
    assert any("undefined_function" in e for e in result.console_errors)
