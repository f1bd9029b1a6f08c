"""One HTML page per report (``index.html`` beside the tables): the paper checks, the roadmap
figure, the table, every step's change in words with its block diagram, the training curves.

The page is built from the files of a written report folder (``table.csv``, ``table.md``,
``agreement.md``, ``roadmap.svg``, ``curves.png``, ``acc_vs_gmacs.png``) plus the roadmap, so
the same code serves a fresh run (:func:`write_run_page`, called by ``write_report``) and a
committed report whose run folder is gone (:func:`write_page_from_files`). Every picture is
embedded as a data URI and the styles are inline: the single file opens from the file system
with no network and can be sent on its own. Diagrams are also written to ``blocks/<step>.svg``.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from .describe import change_phrases, describe_step
from .diagram_draw import SpecOf, step_diagram, step_scales_diagram
from .errors import ConfigError, ModernizeError
from .files import atomic_write_bytes, atomic_write_text
from .proxy import ProxyScale
from .roadmap import Roadmap, load_roadmap
from .runfolder import job_folder, read_job_config
from .spec import ArchSpec

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
figure .box img.wide{min-width:34rem}
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


# --- reading the report folder -------------------------------------------------------------------

def read_table(folder: Path) -> pd.DataFrame:
    path = folder / "table.csv"
    try:  # "n/a" is a value of within_noise, not a missing number
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the report table: {type(exc).__name__}: {exc}"[:300]) from None
    for col in ("step", "adopted", "n", "seeds", "top1_mean", "within_noise", "paper_check"):
        if col not in table.columns:
            raise ConfigError(f"{path}: column '{col}' is missing; is this a report folder written by `report`?")
    table["adopted"] = table["adopted"].astype(str).str.lower().eq("true")
    table["paper_check"] = table["paper_check"].fillna("")
    return table


def _data_uri(path: Path) -> str:
    kind = {"svg": "image/svg+xml", "png": "image/png"}[path.suffix.lstrip(".")]
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def _figure(uri: str, alt: str, caption: str, cls: str = "wide") -> str:
    return (f'<figure><div class="box"><img class="{cls}" src="{uri}" alt="{html.escape(alt)}"></div>'
            f"<figcaption>{caption}</figcaption></figure>")


def _fmt(x: Any, fmt: str) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else format(v, fmt)


def _md_table(md: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table of ``table.md``: the report's own human table (header, rows)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("|")]
    end = next((k for k in range(1, len(rows)) if len(rows[k]) != len(rows[0])), len(rows))
    body = [r for r in rows[1:end] if not all(set(c) <= set(":-") for c in r)]
    return rows[0] if rows else [], body


def _table_html(md: str) -> str:
    head, body = _md_table(md)
    numeric = {k for k, c in enumerate(head) if c.startswith(("GMACs", "params", "delta", "paper top", "paper delta",
                                                               "paper GF", "infer", "train"))}
    drop = {k for k, c in enumerate(head) if c == "change"}  # each step's section says it in full
    ths = "".join(f'<th scope="col">{html.escape(c)}</th>' for k, c in enumerate(head) if k not in drop)
    rows = []
    for r in body:
        cells = []
        for k, v in enumerate(r):
            if k in drop:
                continue
            if k == 0:
                cells.append(f'<th scope="row"><a href="#step-{html.escape(v)}">{html.escape(v)}</a></th>')
            else:
                cls = "num" if k in numeric else ("verdict" if head[k] == "paper check" else "")
                cells.append(f'<td class="{cls}">{html.escape(v)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<p>One row per step; on a narrow screen the table scrolls sideways. top-1: mean ± seed std; delta: "
            "against the parent step (from); paper columns: ImageNet-1K at 224 px.</p>"
            '<div class="box" tabindex="0" role="region" aria-label="ablation table (scrolls sideways)">'
            '<table id="ablation"><caption>Ablation table, one row per step</caption>'
            f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _roadmap_alt(table: pd.DataFrame) -> str:
    vals = [f"{s} {_fmt(t, '.2f') or 'no result'}" + (f" (paper {_fmt(p, '.2f')})" if _fmt(p, ".2f") else "")
            for s, t, p in zip(table["step"], table["top1_mean"], table["paper_top1"])]
    return "Bar chart, one bar per step, top-1 of this run beside the paper's: " + "; ".join(vals) + "."


# --- the page ------------------------------------------------------------------------------------

def _step_facts(r: pd.Series) -> str:
    facts = []
    top1 = _fmt(r.get("top1_mean"), ".2f")
    facts.append(f"top-1 {top1} %" if top1 else f"status: {r.get('status', '')}")
    if d := _fmt(r.get("delta"), "+.2f"):
        facts.append(f"delta {d} (within seed noise: {r.get('within_noise', 'n/a')})")
    if p := _fmt(r.get("paper_delta"), "+.2f"):
        facts.append(f"paper delta {p}")
    if r.get("paper_check"):
        facts.append(f"paper check: {r['paper_check']}")
    return '<ul class="facts">' + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>"


def _step_section(roadmap: Roadmap, k: int, row: pd.Series | None, diagrams: list[tuple[str, str]],
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


def build_page(folder: Path, roadmap: Roadmap, *, spec_of: SpecOf | None = None, resolution: int = 224,
               scale: str = "paper scale", blocks: bool = True) -> str:
    """The page of the report in ``folder`` (written there beforehand by ``report``); with
    ``blocks`` each step's diagram is also written to ``folder/blocks/<step>.svg``."""
    folder = Path(folder)
    table = read_table(folder)
    md = (folder / "table.md").read_text(encoding="utf-8")
    rows = {s: r for s, (_, r) in zip(table["step"], table.iterrows())}
    run_line = next((line for line in md.splitlines()[1:] if line.strip()), "")
    agreement = (folder / "agreement.md").read_text(encoding="utf-8") if (folder / "agreement.md").is_file() else ""
    title = roadmap.description or roadmap.name
    recipe = re.search(r"recipe `([^`]+)`", run_line)
    page_title = f"{roadmap.name}" + (f", recipe {recipe.group(1)}" if recipe else "") + ": ablation report"
    body = [f'<a class="skip" href="#steps">Skip to the steps</a><main><h1>{html.escape(title)}</h1>',
            f'<p class="lead">{_inline(run_line)}</p>']
    bullets = [line for line in agreement.split("\n|", 1)[0].splitlines() if line.startswith("- ")]
    if bullets:
        body.append('<h2 id="summary">In short: this run against the paper</h2>' + markdown_html("\n".join(bullets)))
    figures = {name: folder / name for name in ("roadmap.svg", "roadmap.png", "curves.png", "acc_vs_gmacs.png")}
    roadmap_fig = figures["roadmap.svg"] if figures["roadmap.svg"].is_file() else figures["roadmap.png"]
    if roadmap_fig.is_file():
        body.append(_figure(_data_uri(roadmap_fig), _roadmap_alt(table), "The roadmap, one bar per step: "
                            "this run on the left, the paper's ImageNet-1K top-1 on the right.", cls="wide roadmap"))
    body.append("<h2>The table</h2>" + _table_html(md))
    if agreement:
        body.append(markdown_html("\n".join(line for line in agreement.splitlines() if not line.startswith("# ")), 0))
    body.append('<h2 id="steps">What each step changes</h2><nav aria-label="steps"><ol>' + "".join(
        f'<li><a href="#step-{html.escape(n)}">{html.escape(n)}</a></li>' for n in roadmap.names) + "</ol></nav>")
    if blocks and (folder / BLOCKS).is_dir():  # a step renamed or dropped since the last report
        for stale in (folder / BLOCKS).glob("*.svg"):
            if stale.stem not in roadmap.names:
                stale.unlink()
    for k, step in enumerate(roadmap):
        kw: dict[str, Any] = dict(spec_of=spec_of, resolution=resolution, scale=scale)
        if blocks:
            atomic_write_bytes(folder / BLOCKS / f"{step.name}.svg", step_diagram(roadmap, step.name, **kw)[0])
        halves = [step_diagram(roadmap, step.name, only=side, **kw)
                  for side in (("before", "after") if step.parent else ("after",))]
        uris = [("data:image/svg+xml;base64," + base64.b64encode(svg).decode(), alt) for svg, alt in halves]
        section = _step_section(roadmap, k, rows.get(step.name), uris, scale)
        if spec_of is not None:  # the step at the paper's scale above the block this run trained
            svg, alt = step_scales_diagram(roadmap, step.name, spec_of, scale, proxy_resolution=resolution)
            section = section.removesuffix("</section>") + (
                "<details><summary>This step at the paper's scale and as trained here</summary>" + _figure(
                    "data:image/svg+xml;base64," + base64.b64encode(svg).decode(), alt, "Top: the paper's network "
                    "(what the text describes); bottom: the same step in the proxy this run trained.", cls="scales")
                + "</details></section>")
        body.append(section)
    body.append("<h2>Training</h2>")
    if figures["curves.png"].is_file():
        body.append(_figure(_data_uri(figures["curves.png"]), "Validation top-1 per epoch, one panel per step, "
                            "one line per seed.", "Training curves: validation top-1 per epoch."))
    if figures["acc_vs_gmacs.png"].is_file():
        body.append(_figure(_data_uri(figures["acc_vs_gmacs.png"]), "Scatter plot of top-1 against GMACs per "
                            "image, one point per step, the adopted steps joined in order.",
                            "Accuracy against compute."))
    links = " · ".join(f'<a href="{n}">{n}</a>' for n in ("table.md", "table.csv", "table.tex", "agreement.md")
                       if (folder / n).is_file())
    body.append(f"<footer><p>Files beside this page: {links}. Written by <code>run_ablation.py report</code>."
                "</p></footer></main>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{html.escape(page_title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# --- the two ways in -----------------------------------------------------------------------------
def _proxied(proxy: Any, spec: ArchSpec) -> ArchSpec:
    """A step's spec under the run's proxy; a step the proxy makes invalid (``groups = 32`` on 8
    channels: never trained, ``missing`` in the table) is drawn at the paper's scale instead."""
    try:
        return proxy.apply(spec)
    except ModernizeError:
        return spec



def scale_text(proxy: ProxyScale) -> str:
    """How the drawn networks were scaled, in the caption's words."""
    if proxy.is_identity:
        return "paper scale"
    parts = [f"width ×{proxy.width:g}", f"depth ×{proxy.depth:g}"]
    if proxy.stem_stride is not None:
        parts.append(f"stem stride {proxy.stem_stride}")
    return "proxy as trained: " + ", ".join(parts)


def _proxy_of(meta_proxy: Any) -> ProxyScale:
    known = {f.name for f in fields(ProxyScale)}
    try:
        return ProxyScale(**{k: v for k, v in (meta_proxy or {}).items() if k in known})
    except (ConfigError, TypeError):
        return ProxyScale()


def _resolution(table: pd.DataFrame) -> int:
    res = pd.to_numeric(table.get("resolution"), errors="coerce").dropna() if "resolution" in table else []
    return int(res.iloc[0]) if len(res) else 224


def write_run_page(run: Any, out: Path) -> Path:
    """``index.html`` of a fresh report (``write_report`` calls this once its files are written):
    each step drawn as its job trained it (the spec in ``config.json``: proxy, data channels and
    classes), else as the run's proxy makes it."""
    proxy = _proxy_of(run.meta.get("proxy"))

    def spec_of(name: str) -> ArchSpec:
        for seed in run.seeds:
            try:
                return ArchSpec.from_dict(read_job_config(job_folder(run.run_dir, name, seed))["spec"])
            except (OSError, ConfigError, KeyError, TypeError, ValueError):
                continue
        return _proxied(proxy, run.roadmap[name].spec)

    page = build_page(out, run.roadmap, spec_of=spec_of, resolution=_resolution(read_table(out)),
                      scale=scale_text(proxy))
    atomic_write_text(out / PAGE, page)
    return out / PAGE


_DATA_SHAPES = {"fashion-mnist": (1, 10), "cifar10": (3, 10), "cifar100": (3, 100)}
"""Input channels and classes of the built-in data sets, for a report folder without its run."""


def proxy_from_run_line(line: str) -> ProxyScale:
    """The proxy that ``table.md``'s run line states (``; proxy scale width 0.25, depth 0.34,
    stem_stride 2, init width, layer scale init 1.0 (...)``); none stated: the paper's scale."""
    m = re.search(r"; proxy scale (.*?)\. Run folder", line)
    if not m:
        return ProxyScale()
    values: dict[str, Any] = {}
    for item in re.sub(r"\([^)]*\)", "", m.group(1)).split(","):
        key, _, value = item.strip().rpartition(" ")
        key = {"layer scale init": "layer_scale"}.get(key, key)
        if key in ("width", "depth", "layer_scale"):
            values[key] = float(value)
        elif key == "stem_stride":
            values[key] = int(value)
        elif key == "init":
            values[key] = value
    return ProxyScale(**values)


def write_page_from_files(folder: Path, roadmap: Roadmap | str | Path | None = None) -> Path:
    """``index.html`` and ``blocks/`` of a report folder whose run folder is gone (a committed
    report): the roadmap from ``table.md``'s heading (or ``roadmap``), the proxy from its run
    line, the data set's channels and classes where it is a built-in one."""
    folder = Path(folder)
    md_path = folder / "table.md"
    if not md_path.is_file():
        raise ConfigError(f"{folder}: no table.md; give a folder written by `report`")
    md = md_path.read_text(encoding="utf-8")
    if roadmap is None:
        m = re.match(r"# Ablation: (\S+)", md)
        if not m:
            raise ConfigError(f"{md_path}: the first line does not name the roadmap ('# Ablation: NAME')")
        roadmap = m.group(1)
    rm = roadmap if isinstance(roadmap, Roadmap) else load_roadmap(roadmap)
    run_line = next((line for line in md.splitlines()[1:] if line.strip()), "")
    proxy = proxy_from_run_line(run_line)
    data = re.search(r"data `([^`]+)`", run_line)
    chans, classes = _DATA_SHAPES.get(data.group(1) if data else "", (None, None))

    def spec_of(name: str) -> ArchSpec:
        spec = _proxied(proxy, rm[name].spec)
        return spec.replace(in_chans=chans, num_classes=classes) if chans else spec

    page = build_page(folder, rm, spec_of=spec_of, resolution=_resolution(read_table(folder)),
                      scale=scale_text(proxy))
    atomic_write_text(folder / PAGE, page)
    return folder / PAGE


__all__ = ["PAGE", "build_page", "markdown_html", "proxy_from_run_line", "read_table", "scale_text",
           "write_page_from_files", "write_run_page"]
