"""Older reports read as records: the one module that knows the files a report or a comparison
was made of before ``report.json`` / ``compare.json`` existed, and how each schema version of
those files becomes the current one.

A report folder without ``report.json`` is read from ``table.md`` (its heading names the
roadmap, its run line the recipe, data, seeds and proxy), ``table.csv`` (every row) and
``seeds.csv`` (every finished seed, where the report kept them); the paper checks are computed
again from those rows by the code of today. Such a folder holds no training curves (its
``curves.png`` is kept) and no trained specs (each step is drawn as the proxy makes it, with
the channels and classes of the built-in data set the run line names).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..checks.fidelity import eval_set_of, proxy_rules_in_use
from ..csvtable import REPORT_TABLE_RULES, read_checked
from ..errors import ConfigError
from ..roadmap import Roadmap, load_roadmap
from .facts import budget, proxy_scale, relative_only
from .record import SCHEMA, ReportRecord, SeedResult, Status, with_lesson
from .table import COLUMNS, findings

DATA_SHAPES = {"fashion-mnist": (1, 10), "cifar10": (3, 10), "cifar100": (3, 100)}
"""Input channels and classes of the built-in data sets (as ``data/load.py`` builds them), for
drawing a report that recorded no trained spec."""


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A parsed ``report.json`` of any schema as the current schema's dict."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == SCHEMA:
        return data
    raise ValueError(f"schema {schema!r} is not one this version reads (it reads schema {SCHEMA}); "
                     "write the report again with `report RUN_DIR`")


# --- report folders from before report.json -----------------------------------------------------

def _status(text: str) -> tuple[Status, str]:
    """``failed (epoch 3: loss is NaN)`` -> (FAILED, 'epoch 3: loss is NaN')."""
    m = re.fullmatch(r"(\w+)(?: \((.*)\))?", text.strip(), re.S)
    if not m or m.group(1) not in Status._value2member_map_:
        raise ConfigError(f"table.csv: status {text!r} is none of {', '.join(s.value for s in Status)}")
    return Status(m.group(1)), m.group(2) or ""


def proxy_from_run_line(line: str) -> dict[str, Any]:
    """The proxy settings ``table.md``'s run line states (``; proxy scale width 0.25, depth 0.34,
    stem_stride 2, init width, layer scale init 1.0 (...)``); none stated: the paper's scale."""
    m = re.search(r"; proxy scale (.*?)\.(?: Run folder|\s*$)", line)
    if not m:
        return {}
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
    return values


def _run_line(md_path: Path) -> tuple[str, str]:
    md = md_path.read_text(encoding="utf-8")
    m = re.match(r"# Ablation: (\S+)", md)
    if not m:
        raise ConfigError(f"{md_path}: the first line does not name the roadmap ('# Ablation: NAME')")
    return m.group(1), next((line for line in md.splitlines()[1:] if line.strip()), "")


def _read_csv(path: Path) -> pd.DataFrame:
    try:  # "n/a" is a value of within_noise, not a missing number
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the table: {type(exc).__name__}: {exc}"[:300]) from None


def _rows(table: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: column(s) {', '.join(missing)} missing; is this a report folder written "
                          "by `report`?")
    rows = []
    for rec in table[COLUMNS].to_dict("records"):
        status, reason = _status(str(rec["status"]))
        text = {k: "" if isinstance(rec[k], float) and math.isnan(rec[k]) else str(rec[k])
                for k in ("change", "parent", "recipe", "paper_row", "note", "within_noise")}
        nums = {k: float(rec[k]) if rec[k] != "" else math.nan for k in COLUMNS
                if k not in text and k not in ("step", "status", "adopted", "n", "seeds", "paper_check")}
        rows.append({**rec, **text, **nums, "step": str(rec["step"]), "status": status, "status_reason": reason,
                     "adopted": str(rec["adopted"]).lower() == "true", "n": int(rec["n"]), "seeds": int(rec["seeds"]),
                     "paper_check": ""})
    return rows


def _seeds(folder: Path) -> tuple[SeedResult, ...]:
    path = folder / "seeds.csv"
    if not path.is_file():
        return ()
    frame = _read_csv(path)
    return tuple(SeedResult(str(r["step"]), int(r["seed"]), float(r["top1"]),
                            float(r["top5"]) if r["top5"] != "" else math.nan) for r in frame.to_dict("records"))


def _specs(roadmap: Roadmap, proxy: dict[str, Any], data: str) -> dict[str, dict[str, Any]]:
    scale = proxy_scale(proxy)
    chans, classes = DATA_SHAPES.get(data, (None, None))
    out = {}
    for step in roadmap:
        spec = scale.apply(step.spec)
        out[step.name] = (spec.replace(in_chans=chans, num_classes=classes) if chans else spec).to_dict()
    return out


def _budget_of(recipe: str) -> dict[str, Any]:
    """The named recipe's epochs and images, where it is still a recipe this checkout knows."""
    from dataclasses import asdict

    from ..recipe import load_recipe

    try:
        return budget(asdict(load_recipe(recipe))) if recipe else {}
    except (ConfigError, OSError, TypeError):
        return {}


def record_from_folder(folder: Path, roadmap: Roadmap | str | Path | None = None) -> ReportRecord:
    """The record of a report folder written before ``report.json`` (a committed report whose
    run folder is gone)."""
    from .record import Provenance

    folder = Path(folder)
    md_path = folder / "table.md"
    if not md_path.is_file():
        raise ConfigError(f"{folder}: neither report.json nor table.md; give a folder written by `report`")
    name, line = _run_line(md_path)
    rm = roadmap if isinstance(roadmap, Roadmap) else load_roadmap(roadmap or name)
    proxy = proxy_from_run_line(line)
    field = {k: (re.search(rf"{k} `([^`]+)`", line) or [None, ""])[1] for k in ("recipe", "data")}
    seeds = re.search(r"seeds ([\d, ]+)", line)
    run_dir = re.search(r"Run folder: `([^`]*)`", line)
    read_checked(folder / "table.csv", "report table", REPORT_TABLE_RULES, key=("step",))  # an edited cell: its row
    rows, agr, fid = findings(_rows(_read_csv(folder / "table.csv"), folder / "table.csv"), rm.paper_path, rm,
                              proxy, eval_set_of(field["data"] or "?"))
    rows = with_lesson(rows, rm)
    path = "" if isinstance(roadmap, Roadmap) else str(roadmap or name)
    run = Provenance(roadmap=rm.name, roadmap_path=path if Path(path).is_file() else "",
                     title=rm.description or rm.name, recipe=field["recipe"],
                     data=field["data"] or "?",
                     seeds=tuple(int(s) for s in seeds.group(1).replace(" ", "").split(",") if s) if seeds else (),
                     proxy=proxy, proxy_in_use=dict(proxy_rules_in_use(proxy, [s.spec for s in rm])),
                     run_dir=relative_only(run_dir.group(1)) if run_dir else "", **_budget_of(field["recipe"]))
    return ReportRecord(schema=SCHEMA, run=run, rows=rows, agreement=agr, fidelity=fid, seeds=_seeds(folder),
                        curves=(), specs=_specs(rm, proxy, run.data), per_seed=(folder / "seeds.csv").is_file())


# --- comparisons from before compare.json --------------------------------------------------------

def _runs_table(md: str) -> list[dict[str, str]]:
    """The first pipe table of ``compare.md`` (the runs, one a row)."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")] if lines else []
    out = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(head):
            break
        out.append(dict(zip(head, cells)))
    return out


def comparison_from_folder(folder: Path) -> dict[str, Any]:
    """The ``compare.json`` content (schema 1) of a folder written before ``compare.json``: the
    runs from ``compare.md``'s first table and its "differs" lines, the cells from ``compare.csv``
    (per run ``<label>_status``, ``_n``, ``_mean``, ``_std``; after the baseline ``_diff``,
    ``_diff_lo``, ``_diff_hi``)."""
    folder = Path(folder)
    md_path, csv_path = folder / "compare.md", folder / "compare.csv"
    if not (md_path.is_file() and csv_path.is_file()):
        raise ConfigError(f"{folder}: neither compare.json nor compare.md and compare.csv; give a folder written "
                          "by `compare`")
    md = md_path.read_text(encoding="utf-8")
    base = re.search(r"Baseline: `[^`]+` \(`([^`]*)`\)", md)
    differs = dict(re.findall(r"- `([^`]+)` differs from the baseline in: (.*)", md))
    runs = []
    for k, r in enumerate(_runs_table(md)):
        proxy = {} if r["proxy"] == "none (paper scale)" else {
            key: _scalar(value) for key, _, value in (p.rpartition(" ") for p in r["proxy"].split(", "))}
        runs.append(dict(label=r["run"], run_dir=base.group(1) if (k == 0 and base) else "", roadmap=r["roadmap"],
                         recipe=r["recipe"], lr=float(r["lr"]), data=r["data"], proxy=proxy,
                         seeds=[int(s) for s in r["seeds"].split(", ") if s], code=r["code"], machine=r["machine"],
                         differs="" if k == 0 else differs.get(r["run"], "nothing")))
    rows = []
    for rec in _read_csv(csv_path).to_dict("records"):
        cells = []
        for k, info in enumerate(runs):
            label = info["label"]
            status, reason = _status(str(rec[f"{label}_status"]))
            cell = dict(status=status.value, status_reason=reason, n=int(rec[f"{label}_n"]))
            for c in ("mean", "std", *(("diff", "diff_lo", "diff_hi") if k else ())):
                cell[c] = _float(rec.get(f"{label}_{c}", ""))
            cells.append(cell)
        rows.append(dict(step=str(rec["step"]), cells=cells))
    return dict(schema=1, runs=runs, rows=rows)


def _float(value: Any) -> float | None:
    """A CSV cell as a JSON number (None: empty)."""
    return None if value in ("", None) or (isinstance(value, float) and math.isnan(value)) else float(value)


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


__all__ = ["DATA_SHAPES", "comparison_from_folder", "proxy_from_run_line", "record_from_folder", "upgrade"]
