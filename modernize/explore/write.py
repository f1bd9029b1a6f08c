"""What an explore writes into ``--out DIR``: explore.csv and explore.md (a row per round and
candidate), roadmap.toml (the path found, the other candidates as branches), explore.png
(the search, and top-1 against GMACs) and index.html (the page of all of it)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes
from ..fmt import fixed
from ..roadmap import Roadmap, Step
from ..spec import BASE_SPECS
from .candidates import chain
from .search import Call, Search, Trial

COLUMNS = ("round", "knob", "candidate", "change", "decision", "significant", "why", "n", "mean", "std", "diff",
           "diff_lo", "diff_hi", "gmacs", "params_m", "key")


def _num(x: float, digits: int = 6) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def rows(search: Search, start_name: str) -> list[dict[str, Any]]:
    """The table: the start (round 0), then per round every candidate in the candidate order."""
    out: list[dict[str, Any]] = []
    first = search.rounds[0].current_scores if search.rounds else None
    if first is not None:
        out.append(dict(round=0, knob="", candidate=start_name, change="start", decision="start", significant="",
                        why="the spec every round-1 candidate is compared with", n=len(first.values),
                        mean=_num(first.mean), std=_num(first.std), diff="", diff_lo="", diff_hi="",
                        gmacs=_num(first.gmacs, 8), params_m=_num(first.params_m), key=search.start_key))
    for rnd in search.rounds:
        for t in rnd.trials:
            s = t.scores
            trained = t.decision != "excluded"
            out.append(dict(round=rnd.index, knob=t.knob, candidate=t.alternative, change=t.label, decision=t.decision,
                            significant=("yes" if t.significant else "no") if trained else "", why=t.why,
                            n=len(s.values) if s and trained else "", mean=_num(s.mean) if s and trained else "",
                            std=_num(s.std) if s and trained else "", diff=_num(t.diff), diff_lo=_num(t.lo),
                            diff_hi=_num(t.hi), gmacs=_num(s.gmacs, 8) if s else "",
                            params_m=_num(s.params_m) if s else "", key=t.key or ""))
    return out


def to_csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _pm(r: dict[str, Any]) -> tuple[str, str]:
    mean = fixed(r["mean"]) + (f" ± {fixed(r['std'])}" if r["std"] else "") if r["mean"] else ""
    low, high = fixed(r["diff_lo"], signed=True), fixed(r["diff_hi"], signed=True)
    diff = (fixed(r["diff"], signed=True) + (f" [{low}, {high}]" if r["diff_lo"] else "")) if r["diff"] else ""
    return mean, diff


def to_markdown(search: Search, table: list[dict[str, Any]], setup: dict[str, Any], cost: dict[str, Any]) -> str:
    lines = ["# explore", "", *(f"- {k}: {v}" for k, v in setup.items()), f"- stopped: {search.stop or 'running'}",
             f"- path: {' -> '.join([setup.get('start', 'start')] + [_step(t) for t in search.path]) }",
             *(f"- {k}: {v}" for k, v in cost.items()), "",
             "| round | candidate | change | top-1 (mean ± std) | diff from current [95 %] | GMACs | params (M) "
             "| decision | why |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        mean, diff = _pm(r)
        gmacs = f"{float(r['gmacs']):.4g}" if r["gmacs"] else ""
        params = f"{float(r['params_m']):.3f}" if r["params_m"] else ""
        lines.append("| " + " | ".join(_md_cell(x) for x in (r["round"], r["candidate"], r["change"], mean, diff, gmacs,
                                                              params, r["decision"], r["why"])) + " |")
    return "\n".join(lines) + "\n"


def _step(t: Trial) -> str:
    return f"{t.alternative} ({'significant' if t.significant else 'not significant'})"


# --- roadmap.toml ---------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(v: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists and inline tables: a transform's parameters)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else json.dumps(k)


def _apply(calls: Sequence[Call]) -> str:
    items = [{"transform": n, **p} for n, p in calls]
    return toml_value(items[0] if len(items) == 1 else items)


def _base(roadmap: Roadmap) -> str:
    for name, spec in BASE_SPECS.items():
        if spec == roadmap.base:
            return toml_value(name)
    return toml_value(roadmap.base.to_dict())


def to_roadmap_toml(search: Search, roadmap: Roadmap, start: Step, recipe: str, imports: Sequence[str],
                    rule: str) -> str:
    """The path as a roadmap: the start (its transforms from the base), each round's trained
    candidates as branches (``adopted = false``) off the round's spec, the adopted one continuing."""
    lines = [f"# Written by `run_ablation.py explore` (rule {rule}): the path found, one round a step;",
             "# the other trained candidates of each round are branches (adopted = false).",
             f"name = {toml_value('explore_' + roadmap.name)}",
             f"description = {toml_value(f'explore from {roadmap.name}:{start.name}: {search.stop}')}",
             f"base = {_base(roadmap)}", f"recipe = {toml_value(recipe)}"]
    if imports:
        lines.append(f"imports = {toml_value(list(imports))}")
    calls = chain(roadmap, start)
    lines += ["", "[[steps]]", f"name = {toml_value(start.name)}", f"change = {toml_value('start: ' + start.change)}"]
    if calls:
        lines.append(f"apply = {_apply(calls)}")
    current = start.name
    for rnd in search.rounds:
        won = rnd.adopted
        for t in rnd.trials:
            if t.decision != "rejected":
                continue
            lines += ["", "[[steps]]", f"name = {toml_value(f'r{rnd.index}_{t.alternative}')}",
                      f"from = {toml_value(current)}", "adopted = false",
                      f"change = {toml_value(f'{t.label} (round {rnd.index}: {t.why})')}",
                      f"apply = {_apply(t.calls)}"]
        if won is not None:
            sig = "significant" if won.significant else "not significant"
            lines += ["", "[[steps]]", f"name = {toml_value(won.alternative)}", f"from = {toml_value(current)}",
                      f"change = {toml_value(f'{won.label} (round {rnd.index}, adopted, {sig})')}",
                      f"apply = {_apply(won.calls)}"]
            current = won.alternative
    return "\n".join(lines) + "\n"


def copy_imports(imports: Sequence[tuple[str, str]], out: Path) -> list[str]:
    """The user modules next to roadmap.toml (a roadmap imports from its own folder)."""
    names = []
    for module, folder in imports:
        top = module.split(".")[0]
        src = Path(folder) / top
        if (src.with_suffix(".py")).is_file():
            if src.with_suffix(".py").resolve() != (out / f"{top}.py").resolve():
                shutil.copyfile(src.with_suffix(".py"), out / f"{top}.py")
        elif src.is_dir() and src.resolve() != (out / top).resolve():
            shutil.copytree(src, out / top, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        names.append(module)
    return names


# --- figure and page ------------------------------------------------------------------------

def figure(search: Search, start_name: str) -> bytes:
    """Left: rounds left to right, every trained candidate a point, the adopted path drawn
    through; right: top-1 against GMACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    if search.rounds:
        first = search.rounds[0].current_scores
        px, py, pg = [0], [first.mean], [first.gmacs]
        ax.scatter([0], [first.mean], color="black", zorder=3)
        ax.annotate(start_name, (0, first.mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
        bx.scatter([first.gmacs], [first.mean], color="black", zorder=3)
        for rnd in search.rounds:
            for t in rnd.trials:
                if t.decision == "excluded" or t.scores is None or not t.scores.values:
                    continue
                s, won = t.scores, t.decision == "adopted"
                ax.errorbar([rnd.index], [s.mean], yerr=[0 if math.isnan(s.std) else s.std], fmt="o",
                            color="tab:red" if won else "tab:gray", alpha=1 if won else 0.6, ms=5, capsize=2)
                ax.annotate(t.alternative, (rnd.index, s.mean), fontsize=6, xytext=(3, 0), textcoords="offset points")
                bx.scatter([s.gmacs], [s.mean], color="tab:red" if won else "tab:gray", alpha=1 if won else 0.6, s=18)
                if won:
                    px.append(rnd.index)
                    py.append(s.mean)
                    pg.append(s.gmacs)
        ax.plot(px, py, color="tab:red", lw=1.5)
        bx.plot(pg, py, color="tab:red", lw=1.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="round", ylabel="top-1 (%), mean ± std over seeds", title="search: candidates per round, path in red")
    bx.set(xlabel="GMACs per image (as trained)", ylabel="top-1 (%)", title="accuracy against GMACs")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def page(search: Search, table: list[dict[str, Any]], setup: dict[str, Any], cost: dict[str, Any],
         png: bytes) -> str:
    """index.html: one self-contained file (the figure inline)."""
    e = html.escape
    items = "".join(f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in {**setup, **cost}.items())
    path = " &rarr; ".join([e(str(setup.get("start", "start")))] + [e(_step(t)) for t in search.path])
    head = "".join(f"<th>{h}</th>" for h in ("round", "candidate", "change", "top-1 mean ± std",
                                               "diff [95 %]", "GMACs", "params (M)", "decision", "why"))
    body = []
    for r in table:
        mean, diff = _pm(r)
        cls = {"adopted": "adopted", "excluded": "excluded"}.get(r["decision"], "")
        cells = (r["round"], r["candidate"], r["change"], mean, diff, r["gmacs"], r["params_m"], r["decision"],
                 r["why"])
        body.append(f"<tr class='{cls}'>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>explore</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}tr.adopted{{background:#fde8e8}}
tr.excluded{{color:#888}}img{{max-width:100%}}</style></head><body>
<h1>explore</h1><p>Path found: {path}</p><p>Stopped: {e(search.stop or 'running')}</p><ul>{items}</ul>
<img alt="the search: rounds left to right, every candidate a point, the adopted path in red; top-1 against GMACs"
 src="data:image/png;base64,{img}">
<p>Files: <a href="explore.csv">explore.csv</a>, <a href="explore.md">explore.md</a>,
<a href="roadmap.toml">roadmap.toml</a>, <a href="explore.png">explore.png</a></p>
<table><tr>{head}</tr>{''.join(body)}</table></body></html>
"""


def write_all(out: Path, search: Search, *, roadmap: Roadmap, start: Step, recipe: str,
              imports: Sequence[tuple[str, str]], rule: str, setup: dict[str, Any], cost: dict[str, Any]) -> list[Path]:
    """Every output file, each written atomically (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(search, start.name)
    png = figure(search, start.name)
    names = copy_imports(imports, out)
    files = {"explore.csv": to_csv(table).encode(), "explore.md": to_markdown(search, table, setup, cost).encode(),
             "roadmap.toml": to_roadmap_toml(search, roadmap, start, recipe, names, rule).encode(),
             "explore.png": png, "index.html": page(search, table, setup, cost, png).encode()}
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    return [out / n for n in files]


__all__ = ["figure", "page", "rows", "to_csv", "to_markdown", "to_roadmap_toml", "write_all"]
