#!/usr/bin/env python3
"""The proxy study: which small-scale settings make the CPU trajectory evidence, not an
artifact of under-training (issue: fidelity). Every configuration is a recipe change and/or a
proxy rule applied to *every* step alike; each trains the whole ResNet-50 roadmap for
``--seeds`` seeds on the full Fashion-MNIST test set, with local workers (both cores).

    python scripts/proxy_study.py                       # every configuration, in order
    python scripts/proxy_study.py --only A B            # some of them
    python scripts/proxy_study.py --summary             # then the summary table of all of them

Runs go to ``runs/proxy_study/<config>/`` (resumable); the per-config reports and the summary
(``summary.md``, ``summary.csv``: every configuration tried, none left out) to
``reports/proxy_study/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modernize.proxy import ProxyScale  # noqa: E402
from modernize.recipe import Recipe, load_recipe  # noqa: E402

RUNS = ROOT / "runs" / "proxy_study"
OUT = ROOT / "reports" / "proxy_study"

SCALE_KEYS = ("epochs", "train_images", "val_images", "resolution", "resize")
"""Recipe keys a configuration changes for every step, the step-0 substitute included."""


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    what: str
    recipe: dict[str, object]
    proxy: ProxyScale


CPU = dict(width=0.25, depth=0.34)
CONFIGS = [
    Config("A", "quick recipe as it was (4k images x 2 epochs, 32 px, stem stride 2), full test set",
           {"val_images": 0}, ProxyScale(**CPU, stem_stride=2)),
    Config("B", "A + width-aware init (std 0.02/sqrt(0.25) = 0.04) + layer scale 0.1",
           {"val_images": 0}, ProxyScale(**CPU, stem_stride=2, init="width", layer_scale=0.1)),
    Config("C", "B + 12k unique images x 2 epochs",
           {"val_images": 0, "train_images": 12000}, ProxyScale(**CPU, stem_stride=2, init="width", layer_scale=0.1)),
    Config("D", "C at 64 px with the paper's stride-4 stems (same map sizes after the stem)",
           {"val_images": 0, "train_images": 12000, "resolution": 64, "resize": 64},
           ProxyScale(**CPU, init="width", layer_scale=0.1)),
    Config("E", "D with 30k unique images x 2 epochs",
           {"val_images": 0, "train_images": 30000, "resolution": 64, "resize": 64},
           ProxyScale(**CPU, init="width", layer_scale=0.1)),
]


def derive(base: Recipe, changes: dict[str, object], name: str) -> Recipe:
    """``base`` with ``changes``, the step-0 substitute tables changed alike (its decay epochs
    kept at the same fractions of training)."""
    subs = {}
    for sub_name, sub in base.substitute.items():
        sub = dict(sub)
        for k in SCALE_KEYS:
            if k in changes and k in sub:
                sub[k] = changes[k]
        if "epochs" in changes and "decay_epochs" in sub:
            ratio = float(changes["epochs"]) / float(base.epochs)  # type: ignore[arg-type]
            sub["decay_epochs"] = [round(e * ratio, 3) for e in sub["decay_epochs"]]
        subs[sub_name] = sub
    return base.replace(**changes, substitute=subs, name=name,
                        description=f"proxy study config {name}: {base.description}")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        model = "?"
    import torch

    return f"{model}, {platform.python_version()}, torch {torch.__version__}"


def run_config(cfg: Config, seeds: list[int], workers: int) -> dict[str, object]:
    from modernize.report import build_report
    from modernize.train import train_roadmap

    recipe = derive(load_recipe("quick"), cfg.recipe, f"study_{cfg.name}")
    out = RUNS / cfg.name
    t0 = time.perf_counter()
    train_roadmap(None, data="fashion-mnist", recipe=recipe, seeds=seeds, out=out, device="cpu",
                  proxy=cfg.proxy, workers=workers, threads=1, progress=False)
    wall = time.perf_counter() - t0
    build_report(out, OUT / cfg.name)
    meta = {"config": cfg.name, "what": cfg.what, "recipe_changes": cfg.recipe, "proxy": cfg.proxy.to_dict(),
            "seeds": seeds, "workers": workers, "wall_s_this_invocation": round(wall, 1), "machine": machine()}
    (OUT / cfg.name).mkdir(parents=True, exist_ok=True)
    (OUT / cfg.name / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def study_row(name: str, what: str, run_dir: Path) -> dict[str, Any]:
    """One configuration of the proxy study: per-step mean +- std and the paper checks."""
    from modernize.fidelity import assess
    from modernize.report import load_run, summarize

    run = load_run(run_dir)
    table = summarize(run)
    fid = assess(table, run.roadmap.paper_path)
    final, anchor, diff, lo, hi = fid.end_to_end
    row: dict[str, Any] = {"config": name, "what": what, "seeds": len(run.seeds),
                           "robust_agree": fid.count("robust", "agrees"),
                           "robust_disagree": fid.count("robust", "disagrees"),
                           "robust_inconclusive": fid.count("robust", "inconclusive"),
                           "sign_matches": fid.sign_matches, "binomial_p": round(fid.binomial_p, 4),
                           "equivalence_fail": fid.count("equivalence", "fails"),
                           "final_minus_recipe": round(diff, 2), "ci_low": round(lo, 2), "ci_high": round(hi, 2)}
    for _, r in table.iterrows():
        row[str(r["step"])] = (f"{r['top1_mean']:.2f}±{r['top1_std']:.2f}" if r["n"] >= 2
                               else (f"{r['top1_mean']:.2f}" if r["n"] else str(r["status"])))
    return row


def write_study_summary(entries: list[tuple[str, str, Path]], out: Path, *, machine: str) -> list[Path]:
    """``summary.csv`` and ``summary.md`` over every configuration of the proxy study."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [study_row(*e) for e in entries]
    df = pd.DataFrame(rows)
    df.to_csv(out / "summary.csv", index=False)
    head = ["config", "seeds", "robust_agree", "robust_disagree", "robust_inconclusive", "sign_matches",
            "binomial_p", "equivalence_fail", "final_minus_recipe", "ci_low", "ci_high"]
    steps = [c for c in df.columns if c not in head and c != "what"]
    md = ["# Proxy study: every configuration tried", "", f"Machine: {machine}. Command: "
          "`python scripts/proxy_study.py` then `python scripts/proxy_study.py --summary`. Top-1 % on the full "
          "10,000-image Fashion-MNIST test set, mean ± std over seeds.", "",
          *[f"- **{r['config']}**: {r['what']}" for r in rows], "",
          df[head].to_markdown(index=False), "", df[["config", *steps]].set_index("config").T.to_markdown(), ""]
    (out / "summary.md").write_text("\n".join(md))
    return [out / "summary.csv", out / "summary.md"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=None, help="configuration names (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--summary", action="store_true", help="only rebuild the summary from the runs (after training)")
    args = p.parse_args()
    chosen = [c for c in CONFIGS if args.only is None or c.name in args.only]
    if not args.summary:
        for cfg in chosen:
            print(f"=== config {cfg.name}: {cfg.what}", flush=True)
            meta = run_config(cfg, args.seeds, args.workers)
            print(f"=== config {cfg.name} done in {meta['wall_s_this_invocation']} s", flush=True)
        return 0
    write_study_summary([(c.name, c.what, RUNS / c.name) for c in CONFIGS if (RUNS / c.name).is_dir()],
                        OUT, machine=machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
