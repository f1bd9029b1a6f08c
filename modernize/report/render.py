"""The report's text: the human table (markdown, the terminal), the LaTeX table body and the
agreement summary, all rendered from one :class:`~modernize.report.record.ReportRecord` with
the one number formatter of :mod:`modernize.report.fmt`."""

from __future__ import annotations

import pandas as pd

from ..checks.fidelity import NO_PAPER, fidelity_markdown
from ..fmt import fixed, gmacs, mean_spread, significant
from .record import Provenance, ReportRecord, Row
from .table import NOISE_RULE


def top1_cell(r: Row, pm: str = "±") -> str:
    """``76.65 ± 1.05 (n=2)``; the status where no seed finished."""
    if not r.has_result:
        return r.status_text
    return mean_spread(r.top1_mean, r.top1_std, r.n, pm=pm, of=r.seeds)


def noise_cell(r: Row) -> str:
    return r.within_noise if r.within_noise == "n/a" else f"{r.within_noise} (p={fixed(r.p_value)})"


def paper_delta_cell(r: Row) -> str:
    return "n/a" if r.na_reason else fixed(r.paper_delta, signed=True)


def gmacs_column(record: ReportRecord) -> str:
    res = {int(r.resolution) for r in record.rows if r.resolution == r.resolution}
    return f"GMACs @{res.pop()}px" if len(res) == 1 else "GMACs"


def display_table(record: ReportRecord, *, pm: str = "±") -> pd.DataFrame:
    """The human table (strings): the same numbers as ``table.csv``, rounded for reading."""
    rows = record.rows
    shown = pd.DataFrame({
        "step": [r.step for r in rows],
        "change": [r.change for r in rows],
        "adopted": ["yes" if r.adopted else "branch" for r in rows],
        "from": [r.parent for r in rows],
        gmacs_column(record): [gmacs(r.gmacs) for r in rows],
        "params (M)": [fixed(r.params_m, 3) for r in rows],
        "top-1 (%)": [top1_cell(r, pm) for r in rows],
        "delta": [fixed(r.delta, signed=True) for r in rows],
        "within noise": [noise_cell(r) for r in rows],
        "paper top-1": [fixed(r.paper_top1) for r in rows],
        "paper delta": [paper_delta_cell(r) for r in rows],
        "paper GFLOPs": [fixed(r.paper_gflops) for r in rows],
        "paper check": [r.paper_check for r in rows],
    })
    if not record.has_paper:
        shown = shown.drop(columns=["paper top-1", "paper delta", "paper GFLOPs", "paper check"])
    if any(r.infer_img_s == r.infer_img_s or r.train_img_s == r.train_img_s for r in rows):
        shown["infer img/s"] = [significant(r.infer_img_s) for r in rows]
        shown["train img/s"] = [significant(r.train_img_s) for r in rows]
    return shown


def proxy_words(proxy_in_use: dict) -> str:
    """The proxy settings that changed a step, in words (empty: the paper's scale)."""
    parts = [f"{k} {proxy_in_use[k]}" for k in ("width", "depth", "stem_stride")
             if proxy_in_use.get(k) not in (None, 1, 1.0)]
    if proxy_in_use.get("init") not in (None, "paper"):
        parts.append(f"init {proxy_in_use['init']}")
    if proxy_in_use.get("layer_scale") is not None:  # the `change` column names the paper's init, not this one
        parts.append(f"layer scale init {proxy_in_use['layer_scale']} (in place of each step's own)")
    return ", ".join(parts)


def run_line(run: Provenance) -> str:
    proxy = proxy_words(run.proxy_in_use)
    return (f"Roadmap `{run.roadmap}`, recipe `{run.recipe}`, data `{run.data}`, "
            f"seeds {', '.join(map(str, run.seeds))}{'; proxy scale ' + proxy if proxy else ''}."
            + (f" Run folder: `{run.run_dir}`." if run.run_dir else ""))


def to_markdown(record: ReportRecord) -> str:
    """table.md: the table, how to read it, the seeds that did not finish, the paper checks."""
    lines = [f"# Ablation: {record.run.roadmap}", "", run_line(record.run), "",
             display_table(record).to_markdown(index=False, disable_numparse=True), "",
             "- top-1: mean ± sample std (ddof=1) over the finished seeds, n = finished/total seeds.",
             "- delta: mean top-1 minus the mean of the step's parent (`from`: the previous adopted step).",
             f"- {NOISE_RULE}.",
             *(["- paper columns: ImageNet-1K top-1 and GFLOPs (= multiply-accumulates, 224 px) of the paper's "
                "row; paper delta and check only where the step's and its parent's specs are the paper's for that row."]
               if record.has_paper else []),
             "- GMACs and params: the model actually trained, at the training resolution.",
             "- numbers: those of table.csv (six significant digits) rounded half up.", ""]
    notes = [(r.step, r.note) for r in record.rows if r.note]
    if notes:
        lines += ["Seeds that did not finish:", ""] + [f"- {s}: {n}" for s, n in notes] + [""]
    return "\n".join(lines) + "\n" + agreement_markdown(record)


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
               "→": r"$\rightarrow$", "×": r"$\times$"}


def tex(text: object) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def to_latex(record: ReportRecord) -> str:
    """A booktabs table body to ``\\input`` into a paper (needs ``\\usepackage{booktabs}``)."""
    shown = display_table(record, pm="±").drop(columns=["change", "from"])
    cols = list(shown.columns)
    lines = [f"% {record.run.roadmap}: generated by `run_ablation.py report`; {NOISE_RULE}",
             r"\begin{tabular}{l" + "l" + "r" * (len(cols) - 2) + "}", r"\toprule",
             " & ".join(tex(c) for c in cols) + r" \\", r"\midrule"]
    for _, r in shown.iterrows():
        lines.append(" & ".join(tex(v) for v in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def agreement_markdown(record: ReportRecord) -> str:
    """agreement.md (also the end of table.md): the paper checks, then the secondary figures."""
    agr = record.agreement
    if not record.has_paper:
        return "\n".join(NO_PAPER)
    rho = "n/a (needs >= 3 steps with both values)" if agr.spearman != agr.spearman else \
        fixed(agr.spearman, 3, signed=True)
    lines = [fidelity_markdown(record.fidelity), "## Secondary figures", "",
             f"- Sign of the delta vs the parent step matches the paper's, over every step (noise included): "
             f"{agr.sign_matches} of {agr.compared} steps.",
             f"- Spearman rank correlation of top-1, this run vs the paper, over {agr.ranked} steps: {rho}."]
    if agr.mismatches:
        noise = {r.step: r.within_noise for r in record.rows}
        lines.append("- Opposite sign: " + ", ".join(f"{s} (within noise: {noise[s]})" for s in agr.mismatches) + ".")
    lines += ["", "The paper's numbers are ImageNet-1K top-1 at 224 px after 300 epochs; this run's data, "
              "resolution and budget differ, so only directions and orderings are comparable.", ""]
    return "\n".join(lines)
