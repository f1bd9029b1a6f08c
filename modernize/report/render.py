"""The report's text: the human table (markdown, the terminal), the LaTeX table body and the
agreement summary, all from one :class:`~modernize.report.table.Findings`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..fidelity import NO_PAPER, fidelity_markdown, has_paper, is_na, proxy_rules_in_use
from .load import Run
from .table import NOISE_RULE, Findings


def _f(x: float, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def fmt_gmacs(x: float) -> str:
    """GMACs with three significant digits at any scale (0.0123 at 28 px, 4.09 at 224 px)."""
    if math.isnan(x):
        return ""
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _top1_cell(r: pd.Series, pm: str) -> str:
    if r["n"] == 0:
        return str(r["status"])
    cell = f"{r['top1_mean']:.2f}"
    if r["n"] >= 2:
        cell += f" {pm} {r['top1_std']:.2f}"
    return cell + f" (n={r['n']}{'' if r['n'] == r['seeds'] else '/' + str(r['seeds'])})"


def display_table(table: pd.DataFrame, *, pm: str = "±") -> pd.DataFrame:
    """The human table (strings): the same numbers as ``table.csv``, rounded for reading."""
    res = table["resolution"].dropna().unique()
    gcol = f"GMACs @{int(res[0])}px" if len(res) == 1 else "GMACs"
    shown = pd.DataFrame({
        "step": table["step"],
        "change": table["change"],
        "adopted": table["adopted"].map({True: "yes", False: "branch"}),
        "from": table["parent"],
        gcol: table["gmacs"].map(fmt_gmacs),
        "params (M)": table["params_m"].map(lambda x: _f(x, ".3f")),
        "top-1 (%)": [_top1_cell(r, pm) for _, r in table.iterrows()],
        "delta": table["delta"].map(lambda x: _f(x, "+.2f")),
        "within noise": [w if w == "n/a" else f"{w} (p={p:.2f})"
                         for w, p in zip(table["within_noise"], table["p_value"])],
        "paper top-1": table["paper_top1"].map(lambda x: _f(x, ".2f")),
        "paper delta": ["n/a" if is_na(c) else _f(x, "+.2f") for x, c in zip(table["paper_delta"],
                                                                                 table["paper_check"])],
        "paper GFLOPs": table["paper_gflops"].map(lambda x: _f(x, ".2f")),
        "paper check": table["paper_check"].fillna(""),
    })
    if not has_paper(table):
        shown = shown.drop(columns=["paper top-1", "paper delta", "paper GFLOPs", "paper check"])
    if table["infer_img_s"].notna().any() or table["train_img_s"].notna().any():
        shown["infer img/s"] = table["infer_img_s"].map(lambda x: _f(x, ".3g"))
        shown["train img/s"] = table["train_img_s"].map(lambda x: _f(x, ".3g"))
    return shown


def _run_line(run: Run) -> str:
    m = run.meta
    return (f"Roadmap `{run.roadmap.name}`, recipe `{m['recipe']['name']}`, data `{m.get('data', '?')}`, "
            f"seeds {', '.join(map(str, run.seeds))}"
            f"{_proxy(proxy_rules_in_use(m.get('proxy'), [s.spec for s in run.roadmap]))}. "
            f"Run folder: `{_shown_path(run.run_dir)}`.")


def _shown_path(path: Path) -> str:
    """Relative to the working folder when inside it, so committed reports name no machine."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working folder, or the working folder was deleted
        return str(path)


def _proxy(proxy: Any) -> str:
    """The engine's proxy scale, when the run used one (every step shrunk the same way)."""
    if not isinstance(proxy, dict) or not proxy:
        return ""
    parts = [f"{k} {proxy[k]}" for k in ("width", "depth", "stem_stride") if proxy.get(k) not in (None, 1, 1.0)]
    if proxy.get("init") not in (None, "paper"):
        parts.append(f"init {proxy['init']}")
    if proxy.get("layer_scale") is not None:  # the `change` column names the paper's init, not this one
        parts.append(f"layer scale init {proxy['layer_scale']} (in place of each step's own)")
    return ("; proxy scale " + ", ".join(parts)) if parts else ""


def to_markdown(run: Run, found: Findings) -> str:
    """table.md: the table, how to read it, the seeds that did not finish, the paper checks."""
    table = found.table
    lines = [f"# Ablation: {run.roadmap.name}", "", _run_line(run), "",
             display_table(table).to_markdown(index=False, disable_numparse=True), "",
             "- top-1: mean ± sample std (ddof=1) over the finished seeds, n = finished/total seeds.",
             "- delta: mean top-1 minus the mean of the step's parent (`from`: the previous adopted step).",
             f"- {NOISE_RULE}.",
             *(["- paper columns: ImageNet-1K top-1 and GFLOPs (= multiply-accumulates, 224 px) of the paper's "
                "row; paper delta and check only where the step's and its parent's specs are the paper's for that row."]
               if has_paper(table) else []),
             "- GMACs and params: the model actually trained, at the training resolution.", ""]
    notes = [(s, n) for s, n in zip(table["step"], table["note"]) if n]
    if notes:
        lines += ["Seeds that did not finish:", ""] + [f"- {s}: {n}" for s, n in notes] + [""]
    return "\n".join(lines) + "\n" + agreement_markdown(found)


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
               "→": r"$\rightarrow$", "×": r"$\times$"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def to_latex(run: Run, table: pd.DataFrame) -> str:
    """A booktabs table body to ``\\input`` into a paper (needs ``\\usepackage{booktabs}``)."""
    shown = display_table(table, pm="±").drop(columns=["change", "from"])
    cols = list(shown.columns)
    lines = [f"% {run.roadmap.name}: generated by `run_ablation.py report`; {NOISE_RULE}",
             r"\begin{tabular}{l" + "l" + "r" * (len(cols) - 2) + "}", r"\toprule",
             " & ".join(_tex(c) for c in cols) + r" \\", r"\midrule"]
    for _, r in shown.iterrows():
        lines.append(" & ".join(_tex(v) for v in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def agreement_markdown(found: Findings) -> str:
    """agreement.md (also the end of table.md): the paper checks, then the secondary figures."""
    table, agr = found.table, found.agreement
    if not has_paper(table):
        return "\n".join(NO_PAPER)
    rho = "n/a (needs >= 3 steps with both values)" if math.isnan(agr.spearman) else f"{agr.spearman:+.3f}"
    lines = [fidelity_markdown(found.fidelity), "## Secondary figures", "",
             f"- Sign of the delta vs the parent step matches the paper's, over every step (noise included): "
             f"{agr.sign_matches} of {agr.compared} steps.",
             f"- Spearman rank correlation of top-1, this run vs the paper, over {agr.ranked} steps: {rho}."]
    if agr.mismatches:
        noise = dict(zip(table["step"], table["within_noise"]))
        lines.append("- Opposite sign: " + ", ".join(f"{s} (within noise: {noise[s]})" for s in agr.mismatches) + ".")
    lines += ["", "The paper's numbers are ImageNet-1K top-1 at 224 px after 300 epochs; this run's data, "
              "resolution and budget differ, so only directions and orderings are comparable.", ""]
    return "\n".join(lines)
