"""The user docs stay short, link to files that exist, speak of the product (no first person),
and quote the proxy presets' numbers as the code has them (docs/training.md's tables)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modernize.proxy import PROXIES
from modernize.recipe import builtin_recipes, load_recipe
from modernize.roadmap import load_roadmap

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
REPORT_READMES = sorted((ROOT / "reports").glob("*/README.md"))
LINKED = [README, *DOCS, *REPORT_READMES]
"""Files whose relative links must resolve."""

FIRST_PERSON = re.compile(r"\bI\b|\b(?i:me|my|mine|we|us|our|ours|ourselves)\b|(?i:\bthis session\b|\bsession \d)")
"""First person and the development history's session numbers ("session 8")."""

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The text without code (fenced blocks, inline code): identifiers such as `my_transforms` are not words."""
    return INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    body = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", body, re.M)}


def test_readme_is_at_most_250_lines() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_names_the_commands_ci_and_users_run() -> None:
    text = README.read_text(encoding="utf-8")
    assert "bash scripts/setup.sh && .venv/bin/python run_ablation.py" in text
    assert "bash scripts/setup.sh && .venv/bin/python -m pytest" in text


@pytest.mark.parametrize("path", [README, *DOCS, *REPORT_READMES], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_first_person(path: Path) -> None:
    hits = [(n, line.strip()) for n, line in enumerate(prose(path).splitlines(), 1) if FIRST_PERSON.search(line)]
    assert not hits, f"{path.relative_to(ROOT)}: first person or history: {hits[:5]}"


def test_first_person_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("The proxy, as we saw in session 8, helps.\nUse `my_transforms`.\n", encoding="utf-8")
    assert [line for line in prose(page).splitlines() if FIRST_PERSON.search(line)] == [
        "The proxy, as we saw in session 8, helps."]


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for match in LINK.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links to nothing: {broken}"


CODE_PATH = re.compile(r"`((?:modernize|tests|scripts|ablations|reports|docs)/[\w./-]*)`")
"""A checkout path quoted as code (`modernize/proxy.py`); placeholders (`<roadmap>`, `*.toml`) do not match."""


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_checkout_paths_exist(path: Path) -> None:
    """A module renamed or split (``report.py`` into a package) must not leave the docs pointing at nothing."""
    text = path.read_text(encoding="utf-8")
    missing = sorted({m for m in CODE_PATH.findall(text) if not (ROOT / m).exists()})
    assert not missing, f"{path.relative_to(ROOT)}: names paths that do not exist: {missing}"


def test_link_check_sees_a_broken_anchor() -> None:
    assert "proxy-scale" in anchors(ROOT / "docs" / "training.md")
    assert "proxy-scales" not in anchors(ROOT / "docs" / "training.md")


def table(path: Path, *headers: str) -> list[dict[str, str]]:
    """The first markdown table whose header row starts with ``headers``, as dicts (backticks dropped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and tuple(cells[:len(headers)]) == headers:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                values = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
                rows.append(dict(zip(cells, values, strict=True)))
            return rows
    raise AssertionError(f"{path}: no table with the headers {headers}")


TRAINING = ROOT / "docs" / "training.md"


def test_the_proxy_presets_quoted_in_docs_are_the_codes() -> None:
    rows = {r["preset"]: r for r in table(TRAINING, "preset")}
    assert set(rows) == set(PROXIES)
    own_layer_scale = load_roadmap("resnet50_to_convnext_t")[-1].spec.layer_scale  # 1e-6
    for name, preset in PROXIES.items():
        row = rows[name]
        stride = preset.stem_stride or 4
        assert float(row["width"]) == preset.width, name
        assert float(row["depth"]) == preset.depth, name
        assert int(row["stem stride"]) == stride, name
        assert row["init"] == preset.init, name
        assert float(row["layer scale"]) == (preset.layer_scale or own_layer_scale), name
        size = int(row["input (px)"])
        assert [int(m) for m in row["stage maps (px)"].split("/")] == [size // stride // 2 ** i for i in range(4)], name


def test_the_recipes_quoted_in_docs_are_the_codes() -> None:
    quoted = table(TRAINING, "recipe", "proxy", "resolution")
    assert {r["recipe"] for r in quoted} == {"quick", "study"}
    presets = {r["preset"]: r for r in table(TRAINING, "preset")}
    for row in quoted:
        recipe = load_recipe(row["recipe"])
        assert row["proxy"] == recipe.proxy
        assert int(row["resolution"]) == recipe.resolution == int(presets[recipe.proxy]["input (px)"])
        assert int(row["train images"]) == recipe.train_images
        assert int(row["batch"]) == recipe.batch_size
        assert int(row["epochs"]) == recipe.epochs
        assert int(row["optimiser steps"]) == math.ceil(recipe.train_images * recipe.epochs / recipe.batch_size)


def test_the_recipes_overview_lists_every_built_in_recipe() -> None:
    assert sorted(r["recipe"] for r in table(TRAINING, "recipe", "what it is")) == sorted(builtin_recipes())


def test_the_readme_quotes_the_committed_reference() -> None:
    """The main job's result in the README: every decimal in it is one the committed report prints,
    and the robust-step counts are agreement.md's (updating the reference means updating this text)."""
    text = README.read_text(encoding="utf-8")
    result = re.search(r"^The committed reference .*?(?=\n\n)", text, re.S | re.M)
    assert result, "README.md: no paragraph on the committed reference's result"
    ref = ROOT / "reports" / "resnet50_to_convnext_t"
    printed = (ref / "agreement.md").read_text(encoding="utf-8") + (ref / "table.md").read_text(encoding="utf-8")
    decimals = re.findall(r"\d+\.\d+", result.group(0))
    assert decimals and all(d in printed for d in decimals), [d for d in decimals if d not in printed]
    counts = re.search(r"Robust steps: \*\*(\d) of (\d) agree\*\* \(.*?\), (\d) disagree, (\d) inconclusive", printed)
    assert counts
    agree, total, disagree, inconclusive = counts.groups()
    words = {"0": "none"}
    assert f"{agree} of the paper's {total} robust steps" in result.group(0)
    assert f"{words.get(disagree, disagree)} disagree and {inconclusive} inconclusive" in result.group(0)


@pytest.mark.slow
def test_the_readme_python_example_runs() -> None:
    block = re.search(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert block, "README.md has no python example"
    done = subprocess.run([sys.executable, "-c", block.group(1)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "separate_downsampling" in done.stdout


MACHINE_PATH = re.compile(r"(?<![\w.~+/-])/(?:work|root|home|tmp)/")
"""An absolute path of the machine that wrote a file (a run folder, a checkout, a temporary folder).
Not after a word character, '/', '+' or '.', so ``runs/tmp/``, URLs and base64 data do not match."""
SCANNED = ("docs", "reports", "ablations")
"""The committed docs, reports (generated pages and tables included) and recipes."""


def committed_files(*tops: str) -> list[Path]:
    """The files git tracks under ``tops``; every file there where the checkout has no git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *tops], cwd=ROOT, capture_output=True, check=True,
                             timeout=60).stdout
        files = [ROOT / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        files = [p for top in tops for p in (ROOT / top).rglob("*")]
    return [p for p in files if p.is_file()]


def machine_paths(path: Path) -> list[str]:
    """``file:line: text`` for each machine path in a text file (a binary file has no text to scan)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return []
    text = data.decode("utf-8", errors="replace")
    return [f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {text[m.start():m.start() + 60].splitlines()[0]}"
            for m in MACHINE_PATH.finditer(text)]


def test_no_committed_doc_report_or_recipe_names_a_machine_path() -> None:
    """A committed file must read the same on every machine: no /work/, /root/, /home/ or /tmp/ path.
    Generated report files (table.md, index.html) take the run folder from the report's generator."""
    files = committed_files(*SCANNED)
    assert len(files) > 20, f"only {len(files)} files found under {SCANNED}"
    hits = {str(p.relative_to(ROOT)): found for p in files if (found := machine_paths(p))}
    assert not hits, "absolute machine paths in committed files:\n" + "\n".join(
        f"  {name}: {found[0]}" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
        for name, found in hits.items())


def test_the_machine_path_scan_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "table.md"
    page.write_text("Run folder: `/work/after/runs/main`.\nsaved to (/tmp/x.png)\nruns/tmp/a, https://h.org/home/b\n")
    assert [h.split(": ", 1)[0] for h in machine_paths(page)] == ["table.md:1", "table.md:2"]
    (tmp_path / "shot.png").write_bytes(b"\x89PNG\0/work/x/")
    assert machine_paths(tmp_path / "shot.png") == []
