"""One HTML page per report (``index.html`` beside the tables), rendered from the report's
record alone: the paper checks, the roadmap figure, the table, every step's change in words
with its block diagram, the training curves.

Every picture is embedded as a data URI and the styles are inline: the single file opens from
the file system with no network and can be sent on its own. Diagrams are also written to
``blocks/<step>.svg``. Each step is drawn as its job trained it (the record's ``specs``).
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModernizeError
from ..files import atomic_write_bytes, atomic_write_text
from ..fmt import fixed
from ..proxy import ProxyScale
from ..roadmap import Roadmap, load_roadmap
from ..spec import ArchSpec
from ..views.describe import change_phrases, describe_step
from ..views.diagram_draw import SpecOf, step_diagram, step_scales_diagram
from . import figures
from .facts import proxy_scale
from .record import ReportRecord, Row
from .render import agreement_markdown, display_table, run_line

PAGE = "index.html"
LEGEND = ('Colours: <span class="key" style="background:#dbe7f6"></span>conv or linear'
          '<span class="key" style="background:#dcefd8"></span>norm'
          '<span class="key" style="background:#fff1bf"></span>activation'
          '<span class="key" style="background:#ececec"></span>pooling'
          '<span class="key" style="background:#eadcf3"></span>other. '
          "A thick orange outline and a word mark what this step made new, changed or moved; a dashed grey "
          "outline what it removed or replaced. ")
BLOCKS = "blocks"

CSS = """
:root{--ink:#1a1a1a;--muted:#3f4650;--line:#c8ccd2;--accent:#0b4f9c;--changed:#9a3412;--bg:#fff;--soft:#f4f6f8}
*{box-sizing:border-box}
html{font-size:clamp(16px,0.55vw + 13px,22px)}
body{margin:0;color:var(--ink);background:var(--bg);line-height:1.5;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif}
main{max-width:78rem;margin:0 auto;padding:1rem}
h1{font-size:1.7rem;line-height:1.25;margin:.5rem 0}
h2{font-size:1.35rem;margin-top:2.2rem;border-bottom:2px solid var(--line);padding-bottom:.2rem}
h3{font-size:1.12rem;margin:1.8rem 0 .4rem}
a{color:var(--accent)}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.9em;overflow-wrap:anywhere}
p,li{overflow-wrap:anywhere}
.lead{font-size:1.05rem;color:var(--muted)}
.box{overflow-x:auto;max-width:100%;border:1px solid var(--line);border-radius:6px;background:var(--bg)}
figure{margin:1rem 0}
figure img{display:block;width:100%;height:auto}
figure .box img.roadmap{max-width:50rem;margin:0 auto}
figure .box img.scales{max-width:26rem;margin:0 auto}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,26rem),1fr));gap:.5rem;
 border:1px solid var(--line);border-radius:6px;padding:.3rem}
.pair img{width:100%;height:auto;max-width:44rem}
.key{display:inline-block;width:1.4em;height:.9em;border:1px solid #444;vertical-align:middle;margin:0 .2em 0 .5em}
figcaption{font-size:.9rem;color:var(--muted);margin-top:.3rem}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top;white-space:nowrap}
thead th{background:var(--soft);position:sticky;top:0}
tbody tr:nth-child(even){background:var(--soft)}
caption{position:absolute;left:-999px}
.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600}
.facts{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;margin:.3rem 0;padding:0;list-style:none;color:var(--muted)}
details pre{overflow-x:auto;font-size:.8rem;background:var(--soft);padding:.6rem;border-radius:6px}
nav ol{columns:14rem;padding-left:1.4rem}
.first{border-left:4px solid var(--accent);padding:.2rem 0 .2rem .9rem;margin:.6rem 0 1rem}
.first p{margin:.45rem 0}
.result{font-size:1.1rem}
.sticky th[scope=row],.sticky thead th:first-child{position:sticky;left:0;z-index:1;background:var(--bg);
 box-shadow:1px 0 0 var(--line)}
.sticky thead th:first-child{z-index:2;background:var(--soft)}
.sticky tbody tr:nth-child(even) th[scope=row]{background:var(--soft)}
tr.phase th{background:#e8eef7;white-space:normal;font-weight:600;position:static}
tr.phase th div{position:sticky;left:.5rem;max-width:calc(100vw - 3rem)}
tr.phase th small{font-weight:400;color:var(--muted)}
td.why{white-space:normal;min-width:16rem;max-width:30rem;color:var(--muted)}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.3rem}
"""


# --- small markdown (the report's own .md files) -> HTML ---------------------------------------

def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def markdown_html(md: str, shift: int = 1) -> str:
    """The subset the report writes: headings (moved down ``shift`` levels), bullets, pipe
    tables and paragraphs. Not a general Markdown parser."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if m := re.match(r"(#+) (.*)", line):
            level = min(6, len(m.group(1)) + shift)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set(":-") for c in r)]
            head = "".join(f'<th scope="col">{_inline(c)}</th>' for c in rows[0])
            trs = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f'<div class="box"><table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table></div>')
            continue
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


# --- pieces of the page ---------------------------------------------------------------------------

def _data_uri(path: Path) -> str:
    return _uri(path.read_bytes(), path.suffix)


def _uri(data: bytes, suffix: str) -> str:
    kind = {"svg": "image/svg+xml", "png": "image/png"}[suffix.lstrip(".")]
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def width_inches(path: Path) -> float:
    """A written figure's width in inches (a PNG at ``figures.DPI``, an SVG in points)."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return int.from_bytes(data[16:20], "big") / figures.DPI
    m = re.search(rb'<svg[^>]*\swidth="([\d.]+)pt"', data[:2000])
    return float(m.group(1)) / 72.0 if m else 0.0


def _figure(path: Path, alt: str, caption: str, cls: str = "wide") -> str:
    """An embedded figure, never narrower than its smallest text needs (the box scrolls sideways)."""
    least = figures.min_display_px(width_inches(path))
    return _figure_html(_data_uri(path), alt, caption, cls, f' style="min-width:{least}px"')


def _figure_html(uri: str, alt: str, caption: str, cls: str, style: str = "",
                 font_pt: float = figures.MIN_FONT_PT) -> str:
    """``data-min-font-pt``: the figure's smallest text, for a check of what a reader sees."""
    return (f'<figure><div class="box"><img class="{cls}"{style} data-min-font-pt="{font_pt:g}" src="{uri}" '
            f'alt="{html.escape(alt)}"></div><figcaption>{caption}</figcaption></figure>')


def _svg_min_font_pt(svg: bytes) -> float:
    """The smallest font size an SVG drawing uses (its text is kept as text, in points)."""
    sizes = [float(x) for x in re.findall(rb"font-size:\s*([\d.]+)px|font-size=\"([\d.]+)", svg) for x in x if x]
    return min(sizes) if sizes else figures.MIN_FONT_PT


NUMERIC = ("GMACs", "params", "delta", "paper top", "paper delta", "paper GF", "infer", "train")


def _cell(name: str, value: str) -> str:
    cls = "num" if name.startswith(NUMERIC) else ("verdict" if name == "paper check" else "")
    return f'<td class="{cls}">{html.escape(value)}</td>'


def _step_th(step: str) -> str:
    sid = html.escape(step)
    return f'<th scope="row"><a href="#step-{sid}">{sid}</a></th>'


def _table_html(record: ReportRecord) -> str:
    """Every column of ``table.md`` (the same numbers as ``table.csv``), the step column sticky."""
    shown = display_table(record).drop(columns=["change"])  # each step's section says it in full
    head = list(shown.columns)
    ths = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in head)
    rows = ["<tr>" + _step_th(values[0]) + "".join(_cell(n, v) for n, v in zip(head[1:], values[1:])) + "</tr>"
            for values in shown.itertuples(index=False)]
    return ("<p>top-1: mean ± seed std; delta: against the parent step (from); paper columns: ImageNet-1K at "
            '224 px.</p><div class="box sticky" tabindex="0" role="region" aria-label="the full table">'
            '<table id="ablation"><caption>Ablation table, one row per step</caption>'
            f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


LESSON_COLUMNS = ("delta", "paper delta", "GMACs change", "paper check", "why (the paper)")


def gmacs_change(row: Row, parent: Row | None) -> str:
    """The step's compute change against its parent, in per cent of the parent's (this run's GMACs)."""
    if parent is None or not parent.gmacs > 0 or row.gmacs != row.gmacs:
        return ""
    return fixed(100.0 * (row.gmacs / parent.gmacs - 1.0), 0, signed=True) + " %"


def _phase_header(row: Row, ncols: int) -> str:
    if not row.phase:
        title, note = "Starting point, recipe and other steps", "not one of the paper's design phases"
    else:
        title, note = f"{row.phase[:1].upper()}{row.phase[1:]} (§{row.phase_section})", row.phase_summary
    return (f'<tr class="phase"><th colspan="{ncols}" scope="colgroup"><div>{html.escape(title)} '
            f"<small>{html.escape(note)}</small></div></th></tr>")


def lesson_table(record: ReportRecord) -> str:
    """The steps under the paper's five phases: each step's change in this run beside the paper's,
    its compute change and the paper's one-line reason (the essential columns; the rest folded)."""
    shown = display_table(record)
    by_step = {r.step: r for r in record.rows}
    cols = [c for c in LESSON_COLUMNS if c in shown.columns or c in ("GMACs change", "why (the paper)")]
    ths = '<th scope="col">step</th>' + "".join(f'<th scope="col">{html.escape(c)}</th>' for c in cols)
    out, phase = [], None
    for r, (_, values) in zip(record.rows, shown.iterrows()):
        if r.phase != phase:
            out.append(_phase_header(r, len(cols) + 1))
            phase = r.phase
        cells = {"GMACs change": gmacs_change(r, by_step.get(r.parent)), "why (the paper)": r.reason}
        tds = "".join(f'<td class="why">{html.escape(r.reason)}</td>' if c == "why (the paper)"
                      else _cell(c, cells.get(c, values.get(c, ""))) for c in cols)
        out.append(f"<tr>{_step_th(r.step)}{tds}</tr>")
    return ('<div class="box sticky" tabindex="0" role="region" aria-label="the steps by phase">'
            '<table id="lesson"><caption>The steps under the paper\'s design phases</caption>'
            f"<thead><tr>{ths}</tr></thead><tbody>{''.join(out)}</tbody></table></div>")


def _roadmap_alt(record: ReportRecord) -> str:
    vals = [f"{r.step} {fixed(r.top1_mean) or 'no result'}"
            + (f" (paper {fixed(r.paper_top1)})" if fixed(r.paper_top1) else "") for r in record.rows]
    return "Bar chart, one bar per step, top-1 of this run beside the paper's: " + "; ".join(vals) + "."


# --- the first screen: what was trained, the result, how to read it ---------------------------------

DATA_NAMES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
              "imagenet": "ImageNet-1K", "synthetic": "synthetic"}
FRACTIONS = ((0.25, "a quarter"), (0.5, "half"), (0.34, "a third"), (0.33, "a third"), (0.75, "three quarters"),
             (0.67, "two thirds"), (0.66, "two thirds"))
PROXY_STUDY = Path("reports") / "proxy_study" / "README.md"
"""Why small networks rank some steps otherwise than the paper: linked from the first screen."""


def fraction_words(x: float) -> str:
    """0.25 -> 'a quarter'; a value without a common name as '0.4 times'."""
    return next((w for v, w in FRACTIONS if abs(x - v) < 0.005), f"{x:g} times")


def trained_words(record: ReportRecord) -> str:
    """What was trained, how small, on what, in plain words (from the record alone)."""
    run, rows = record.run, record.rows
    adopted = [r.step for r in rows if r.adopted] or [r.step for r in rows]
    first, last = (html.escape(adopted[0]), html.escape(adopted[-1]))
    what = f"{len(rows)} networks, from <code>{first}</code> to <code>{last}</code>"
    shrink = []
    for key, noun in (("width", "the width"), ("depth", "the depth")):
        v = run.proxy.get(key)
        if isinstance(v, (int, float)) and v != 1:
            shrink.append(f"{fraction_words(float(v))} of {noun}")
    scale = ", each shrunk to " + " and ".join(shrink) if shrink else ", at the paper's width and depth"
    epochs = run.epochs
    passes = ("trained once over" if epochs == 1 else f"trained for {epochs:g} passes over" if epochs == epochs
              else "trained on")
    images = f"{run.train_images:,}" if run.train_images else "all the"
    data = DATA_NAMES.get(run.data.lower(), run.data)
    res = sorted({int(r.resolution) for r in rows if r.resolution == r.resolution})
    at = f" at {res[0]} px" if len(res) == 1 else ""
    seeds = f"{len(run.seeds)} seed{'s' if len(run.seeds) != 1 else ''}"
    return f"{what}{scale}, {passes} {images} {html.escape(data)} training images{at}, {seeds} each."


def result_words(record: ReportRecord) -> str:
    """The end-to-end change (final step minus the recipe step) with its 95 % interval, and the paper's."""
    final, anchor, diff, lo, hi = record.fidelity.end_to_end
    if not final or not anchor or diff != diff:
        return "No end-to-end result yet: the last adopted step or the recipe step has no finished seed."
    interval = (f"95 % interval {fixed(lo, signed=True)} to {fixed(hi, signed=True)}" if lo == lo
                else "no interval: it needs 2 seeds on both steps")
    rows = {r.step: r for r in record.rows}
    paper = rows[final].paper_top1 - rows[anchor].paper_top1 if final in rows and anchor in rows else float("nan")
    said = f"; the paper: {fixed(paper, signed=True)} points" if paper == paper else ""
    return (f"<strong>From <code>{html.escape(anchor)}</code> to <code>{html.escape(final)}</code>, top-1 changed by "
            f"{fixed(diff, signed=True)} points</strong> ({interval}){said}.")


def proxy_study_link(folder: Path) -> str:
    """A relative link to the proxy study where the page lies in this repository; elsewhere its
    path in the repository as text (a page copied away keeps no broken link)."""
    root = Path(__file__).resolve().parents[2]
    study = root / PROXY_STUDY
    try:
        Path(folder).resolve().relative_to(root)
    except ValueError:
        return f"the proxy study (<code>{PROXY_STUDY.as_posix()}</code> in the modernize repository)"
    if not study.is_file():
        return f"the proxy study (<code>{PROXY_STUDY.as_posix()}</code> in the modernize repository)"
    rel = Path(os.path.relpath(study, Path(folder).resolve())).as_posix()
    return f'the <a href="{html.escape(rel)}">proxy study</a>'


def first_screen(record: ReportRecord, folder: Path) -> str:
    """What a reader needs before any table: what was trained, the main result, how to read it;
    the settings folded below."""
    parts = [f"<p>{trained_words(record)}</p>", f'<p class="result">{result_words(record)}</p>']
    if record.has_paper:
        parts.append("<p><strong>Directions only:</strong> compare signs with the paper, not levels (the paper "
                     "trains full-size networks for 300 epochs on ImageNet-1K at 224 px). Why some steps go the other "
                     f"way at this size: {proxy_study_link(folder)}.</p>")
    settings = [f"<li>{_inline(run_line(record.run))}</li>"]
    settings += [f"<li><code>{html.escape(k)}</code> = <code>{html.escape(str(v))}</code></li>"
                 for k, v in sorted(record.run.proxy.items()) if v is not None]
    parts.append(f"<details><summary>Settings (recipe, data, seeds, proxy rules)</summary><ul>{''.join(settings)}"
                 "</ul></details>")
    return '<section class="first" aria-label="what this page shows">' + "".join(parts) + "</section>"


# --- the page ------------------------------------------------------------------------------------

def _step_facts(r: Row) -> str:
    top1 = fixed(r.top1_mean)
    facts = [f"top-1 {top1} %" if top1 else f"status: {r.status_text}"]
    if d := fixed(r.delta, signed=True):
        facts.append(f"delta {d} (within seed noise: {r.within_noise})")
    if p := fixed(r.paper_delta, signed=True):
        facts.append(f"paper delta {p}")
    if r.paper_check:
        facts.append(f"paper check: {r.paper_check}")
    return '<ul class="facts">' + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>"


def _step_section(roadmap: Roadmap, k: int, row: Row | None, diagrams: list[tuple[str, str]],
                  scale: str) -> str:
    step = roadmap[k]
    parent = roadmap[step.parent] if step.parent else None
    kind = "adopted" if step.adopted else "explored branch, not adopted"
    sid = html.escape(step.name)
    out = [f'<section id="step-{sid}" aria-labelledby="h-{sid}">',
           f'<h3 id="h-{sid}">{k + 1}. {sid} <small>({kind}'
           + (f"; from {html.escape(parent.name)}" if parent else "") + ")</small></h3>",
           f"<p>{html.escape(step.change)}</p>"]
    if row is not None:
        out.append(_step_facts(row))
    if parent is not None:
        phrases = change_phrases(parent.spec, step.spec) or ["no architecture change"]
        r0, r1 = parent.recipe or roadmap.recipe, step.recipe or roadmap.recipe
        if r0 != r1:
            phrases.append(f"training recipe {r0} -> {r1}")
        out.append("<p>What changed (paper scale):</p><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in phrases)
                   + "</ul>")
    imgs = "".join(f'<img src="{uri}" alt="{html.escape(alt)}">' for uri, alt in diagrams)
    out.append(f'<figure><div class="pair">{imgs}</div><figcaption>{LEGEND}The block '
               + (f"before ({html.escape(parent.name)}) and after this step" if parent else "of the first step")
               + f", drawn from the built model ({html.escape(scale)}); the file "
               f'<a href="{BLOCKS}/{sid}.svg">{BLOCKS}/{sid}.svg</a> holds both sides.</figcaption></figure>')
    text = describe_step(roadmap, step)
    out.append(f"<details><summary>describe's text and per-stage cost (paper scale, 224 px)</summary>"
               f"<pre>{html.escape(text)}</pre></details></section>")
    return "\n".join(out)


def build_page(record: ReportRecord, folder: Path, roadmap: Roadmap, *, spec_of: SpecOf | None = None,
               resolution: int = 224, scale: str = "paper scale", blocks: bool = True) -> str:
    """The page of ``record``, its figures read from ``folder`` (written there beforehand); with
    ``blocks`` each step's diagram is also written to ``folder/blocks/<step>.svg``."""
    folder = Path(folder)
    rows = {r.step: r for r in record.rows}
    agreement = agreement_markdown(record)
    page_title = f"{record.run.roadmap}, recipe {record.run.recipe}: ablation report"
    body = [f'<a class="skip" href="#steps">Skip to the steps</a><main><h1>{html.escape(record.run.title)}</h1>',
            first_screen(record, folder)]
    bullets = [line for line in agreement.split("\n|", 1)[0].splitlines() if line.startswith("- ")]
    if bullets:
        body.append('<h2 id="summary">In short: this run against the paper</h2>' + markdown_html("\n".join(bullets)))
    drawn = {name: folder / name for name in ("roadmap.svg", "roadmap.png", "curves.png", "acc_vs_gmacs.png")}
    roadmap_fig = drawn["roadmap.svg"] if drawn["roadmap.svg"].is_file() else drawn["roadmap.png"]
    if roadmap_fig.is_file():
        body.append(_figure(roadmap_fig, _roadmap_alt(record), "The roadmap, one bar per step: "
                            "this run on the left, the paper's ImageNet-1K top-1 on the right.", cls="wide roadmap"))
    body.append('<h2 id="phases">The steps, phase by phase</h2><p>Each step under the paper\'s design phase, '
                "with the paper's reason for it. delta: this run's top-1 change against the step's parent; paper "
                "delta: the paper's; GMACs change: this run's compute against the parent. The step column stays "
                "when the table scrolls sideways.</p>" + lesson_table(record))
    body.append("<details><summary>Every column (the numbers of table.csv)</summary>" + _table_html(record)
                + "</details>")
    rest = "\n".join(line for line in agreement.splitlines() if line not in bullets)
    body.append(markdown_html(rest, 0))
    body.append('<h2 id="steps">What each step changes</h2><nav aria-label="steps"><ol>' + "".join(
        f'<li><a href="#step-{html.escape(n)}">{html.escape(n)}</a></li>' for n in roadmap.names) + "</ol></nav>")
    body += _step_sections(folder, roadmap, rows, dict(spec_of=spec_of, resolution=resolution, scale=scale), blocks)
    body.append("<h2>Training</h2>")
    if drawn["curves.png"].is_file() and record.has_curves:
        body.append(_figure(drawn["curves.png"], "Validation top-1 per epoch, one panel per step, "
                            "one line per seed.", "Training curves: validation top-1 per epoch."))
    else:
        body.append("<p>No training curves: each job logged one evaluation (a one-epoch run, or a report "
                    "migrated without its logs), so a curve would be a single point.</p>")
    if drawn["acc_vs_gmacs.png"].is_file():
        body.append(_figure(drawn["acc_vs_gmacs.png"], "Scatter plot of top-1 against GMACs per "
                            "image, one point per step, the adopted steps joined in order.",
                            "Accuracy against compute."))
    links = " · ".join(f'<a href="{n}">{n}</a>' for n in ("table.md", "table.csv", "table.tex", "agreement.md",
                                                          "report.json") if (folder / n).is_file())
    body.append(f"<footer><p>Files beside this page: {links}. Written by <code>run_ablation.py report</code>."
                "</p></footer></main>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(page_title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _proxied(proxy: Any, spec: ArchSpec) -> ArchSpec:
    """A step's spec under the run's proxy; a step the proxy makes invalid (``groups = 32`` on 8
    channels: never trained, ``missing`` in the table) is drawn at the paper's scale instead."""
    try:
        return proxy.apply(spec)
    except ModernizeError:
        return spec


def _step_sections(folder: Path, roadmap: Roadmap, rows: dict[str, Row], kw: dict[str, Any],
                   blocks: bool) -> list[str]:
    """Each step's section with its diagrams (and ``blocks/<step>.svg`` when ``blocks``)."""
    if blocks and (folder / BLOCKS).is_dir():  # a step renamed or dropped since the last report
        for stale in (folder / BLOCKS).glob("*.svg"):
            if stale.stem not in roadmap.names:
                stale.unlink()
    out = []
    for k, step in enumerate(roadmap):
        if blocks:
            atomic_write_bytes(folder / BLOCKS / f"{step.name}.svg", step_diagram(roadmap, step.name, **kw)[0])
        halves = [step_diagram(roadmap, step.name, only=side, **kw)
                  for side in (("before", "after") if step.parent else ("after",))]
        uris = [("data:image/svg+xml;base64," + base64.b64encode(svg).decode(), alt) for svg, alt in halves]
        section = _step_section(roadmap, k, rows.get(step.name), uris, kw["scale"])
        if kw["spec_of"] is not None:  # the step at the paper's scale above the block this run trained
            svg, alt = step_scales_diagram(roadmap, step.name, kw["spec_of"], kw["scale"],
                                           proxy_resolution=kw["resolution"])
            section = section.removesuffix("</section>") + (
                "<details><summary>This step at the paper's scale and as trained here</summary>" + _figure_html(
                    _uri(svg, ".svg"), alt, "Top: the paper's network (what the text describes); bottom: the same "
                    "step in the proxy this run trained.", "scales",  # its text is sized for a phone already
                    font_pt=_svg_min_font_pt(svg))
                + "</details></section>")
        out.append(section)
    return out


# --- from the record to the file ----------------------------------------------------------------

def scale_text(proxy: ProxyScale) -> str:
    """How the drawn networks were scaled, in the caption's words."""
    if proxy.is_identity:
        return "paper scale"
    parts = [f"width ×{proxy.width:g}", f"depth ×{proxy.depth:g}"]
    if proxy.stem_stride is not None:
        parts.append(f"stem stride {proxy.stem_stride}")
    return "proxy as trained: " + ", ".join(parts)


def roadmap_of(record: ReportRecord) -> Roadmap:
    """The record's roadmap: its file where it still is, else the built-in of its name."""
    path = Path(record.run.roadmap_path) if record.run.roadmap_path else None
    if path is not None and path.is_file():
        return load_roadmap(path)
    try:
        return load_roadmap(record.run.roadmap)
    except ConfigError:
        raise ConfigError(f"report record: the roadmap file ({record.run.roadmap_path!r}) is missing and its name "
                          f"({record.run.roadmap!r}) is not a built-in roadmap") from None


def write_page(record: ReportRecord, out: Path, roadmap: Roadmap | None = None) -> Path:
    """``index.html`` (and ``blocks/``) of ``record`` in ``out``, beside its written figures."""
    rm = roadmap if roadmap is not None else roadmap_of(record)
    proxy = proxy_scale(record.run.proxy)

    def spec_of(name: str) -> ArchSpec:
        spec = record.specs.get(name)
        return ArchSpec.from_dict(spec) if spec is not None else _proxied(proxy, rm[name].spec)

    res = sorted({int(r.resolution) for r in record.rows if r.resolution == r.resolution})
    page = build_page(record, out, rm, spec_of=spec_of, resolution=res[0] if res else 224, scale=scale_text(proxy))
    atomic_write_text(Path(out) / PAGE, page)
    return Path(out) / PAGE


__all__ = ["PAGE", "build_page", "markdown_html", "roadmap_of", "scale_text", "write_page"]
