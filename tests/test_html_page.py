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
from modernize.html_page import markdown_html, proxy_from_run_line  # noqa: E402
from modernize.proxy import FIDELITY32_PROXY, ProxyScale  # noqa: E402
from modernize.report import build_report  # noqa: E402
from modernize.roadmap import load_roadmap  # noqa: E402
from modernize.runfolder import read_run_meta, write_run_meta  # noqa: E402

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


def test_run_page_draws_the_proxy_it_trained(small_report: Path) -> None:
    svg = (small_report / "blocks" / "resnet50.svg").read_text()
    assert "proxy as trained: width ×0.25, depth ×0.34, stem stride 2" in svg
    assert "conv 1x1, 64→32" in svg and "256→128" not in svg  # width x0.25 of the paper's 256→128
    assert "32 px input" in svg


def test_page_from_committed_files(small_report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A report folder without its run (a committed one) gets the same page from its files."""
    folder = tmp_path / "committed"
    shutil.copytree(small_report, folder)
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
        assert proxy_from_run_line(line) == FIDELITY32_PROXY
    assert proxy_from_run_line("Roadmap `x`, recipe `paper`, seeds 0. Run folder: `r`.") == ProxyScale()


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


@pytest.mark.slow
def test_page_in_headless_chromium_at_phone_width(small_report: Path, chromium: tuple[str, str],
                                                  tmp_path: Path) -> None:
    shot = tmp_path / "page-390px.png"
    result = check_page(chromium, small_report / "index.html", shot, width=390)
    print(f"screenshot: {shot}")
    assert result.console_errors == []
    assert result.images == IMAGES and result.broken_images == [] and result.images_without_alt == []
    assert result.table_rows == len(STEPS)
    assert result.scroll_width <= 390
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
