#!/usr/bin/env python3
"""The proxy study: which small-scale settings make the CPU trajectory evidence, not an
artifact of under-training (issue: fidelity). Every configuration is a recipe change and/or a
proxy rule applied to *every* step alike; each trains the whole ResNet-50 roadmap for
``--seeds`` seeds on the full Fashion-MNIST test set, with local workers (both cores), except a
configuration that differs from another only at some steps (``Config.reuse``): it trains those.

    python scripts/proxy_study.py                       # every configuration, in order
    python scripts/proxy_study.py --only A B            # some of them
    python scripts/proxy_study.py --summary             # then the summary table of all of them
    python scripts/proxy_study.py --probes [NAME ...]   # the one-seed probes (two steps each)

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

from modernize.proxy import CPU_PROXY, FIDELITY32_PROXY, FIDELITY_PROXY, ProxyScale  # noqa: E402
from modernize.recipe import Recipe, load_recipe  # noqa: E402

RUNS = ROOT / "runs" / "proxy_study"
OUT = ROOT / "reports" / "proxy_study"

SCALE_KEYS = ("epochs", "train_images", "val_images", "resolution", "resize", "batch_size", "precise_bn_batches")
"""Recipe keys a configuration changes for every step, the step-0 substitute included."""

RESNET_DECAY = (30 / 90, 60 / 90, 80 / 90)
"""Step 0's lr drops, as fractions of training: the original recipe's epochs 30, 60, 80 of 90."""


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    what: str
    recipe: dict[str, object]
    proxy: ProxyScale
    base: str = "quick"
    run_dir: Path | None = None
    """Where its runs live (default ``runs/proxy_study/<name>``)."""
    reuse: str | None = None
    """A configuration whose jobs equal this one's at every step but ``steps`` (a knob that only
    some steps have, such as layer scale): only ``steps`` are trained, the rest taken from it."""
    steps: tuple[str, ...] = ()
    """With ``reuse``: the steps trained; the first of them must equal the reused configuration's
    to the digit at every seed (the check that the premise holds), the others are this one's own."""

    @property
    def runs(self) -> Path:
        return self.run_dir if self.run_dir is not None else RUNS / self.name


OLD_QUICK: dict[str, object] = dict(train_images=4000, epochs=2, batch_size=128, lr=2e-3, lr_batch=128,
                                    precise_bn_batches=5, val_images=0)
"""Config A's budget (4k images x 2 epochs, batch 128: 62 optimiser steps)."""
FIDELITY32 = dataclasses.replace(FIDELITY32_PROXY, layer_scale=0.1)
FIDELITY = dataclasses.replace(FIDELITY_PROXY, layer_scale=0.1)
"""The library's `fidelity32` (stem stride 2, 32 px) and `fidelity` (the paper's stride-4 stems)
presets at layer scale 0.1, the value configurations B-P (L apart) were run with. The presets start it
at 1.0 (what L, Q, R, S and T measure); pinned here so that each configuration trains what it records."""
F_BUDGET: dict[str, object] = dict(train_images=8000, batch_size=32, lr_batch=32, precise_bn_batches=20)
"""Config F's budget (8k unique images once, batch 32: 250 optimiser steps), the base of the knob
configurations L-P, each of which changes one knob of F."""
CONFIGS = [
    Config("A", "baseline: 4k images x 2 epochs, batch 128, lr 2e-3, 32 px, stem stride 2 (proxy `cpu`)",
           OLD_QUICK, CPU_PROXY),
    Config("B", "A + width-aware init (std 0.02/sqrt(0.25) = 0.04) + layer scale 0.1 (proxy `fidelity32`)",
           OLD_QUICK, FIDELITY32),
    Config("F", "B + batch 32 (lr 4e-3 per 32) over 8k unique images x 1 epoch: 250 optimiser steps "
           "(about 11 min for 2 seeds on 2 cores)",
           F_BUDGET, FIDELITY32),
    Config("G", "F with 30k unique images x 1 epoch: 938 optimiser steps (the `study` recipe's budget at layer "
           "scale 0.1)", {}, FIDELITY32, base="study"),
    Config("H", "F at batch 24 (lr 4e-3 per 24) over 6k unique images: the same 250 optimiser steps, 3/4 of "
           "the images (the `quick` recipe's budget at layer scale 0.1)", {}, FIDELITY32),
    Config("J", "F at 2x the pixels with the paper's stride-4 stems: 28 px resized to 56, zero-padded to 64, stage "
           "maps 16/8/4/2 as in F (proxy `fidelity`): the stem change alone, at about F's cost",
           F_BUDGET | dict(resize=56, resolution=64),
           FIDELITY),
    Config("K", "F at 4x the pixels with the paper's stride-4 stems: 28 px resized to 112, zero-padded to 128 "
           "(the 32-px layout, 4x), stage maps 32/16/8/4 instead of 16/8/4/2 (proxy `fidelity`: the paper's "
           "7x7/2 conv + pool and 4x4/4 patchify stems); tests whether stem and kernel steps lose for want "
           "of pixels", F_BUDGET | dict(resize=112, resolution=128), FIDELITY),
    Config("L", "F with layer scale 1.0 instead of 0.1 (the layer-scale knob: 0.1 is CaiT's rule for <= 18 "
           "blocks, the proxy has 6; 1.0 starts every residual branch at full strength)",
           F_BUDGET, dataclasses.replace(FIDELITY32, layer_scale=1.0)),
    Config("M", "F with a 0.05-epoch warm-up (12 optimiser steps) instead of 0.25 (62 steps): the schedule "
           "knob; a quarter of a 250-step run spent warming up may starve the slower LayerNorm steps",
           F_BUDGET | dict(warmup_epochs=0.05), FIDELITY32),
    Config("N", "F at width x0.5 instead of x0.25 (init std 0.02/sqrt(0.5)): the width knob",
           F_BUDGET, dataclasses.replace(FIDELITY32, width=0.5)),
    Config("P", "F at depth x0.67 instead of x0.34 (ConvNeXt 2/2/6/2 blocks, ResNet 2/3/4/2): the depth knob",
           F_BUDGET, dataclasses.replace(FIDELITY32, depth=0.67)),
    Config("Q", "P with L's layer scale 1.0: the two knobs that each helped, together. Layer scale exists only "
           "at separate_downsampling, so Q trains that step and bn_to_ln (which must equal P's to the digit) "
           "and takes P's jobs for the rest",
           F_BUDGET, dataclasses.replace(FIDELITY32, depth=0.67, layer_scale=1.0), reuse="P",
           steps=("bn_to_ln", "separate_downsampling")),
    Config("R", "H with L's layer scale 1.0: the main job (the `quick` recipe with the proxy `fidelity32`; its "
           "seeds 0 and 1 are `python run_ablation.py`'s); trains separate_downsampling and bn_to_ln (which must "
           "equal H's) and takes H's jobs",
           {}, dataclasses.replace(FIDELITY32, layer_scale=1.0), reuse="H",
           steps=("bn_to_ln", "separate_downsampling")),
    Config("S", "G with L's layer scale 1.0: the study preset (the `study` recipe with the proxy "
           "`fidelity32`); trains separate_downsampling and bn_to_ln (which must equal G's) and takes G's jobs",
           {}, dataclasses.replace(FIDELITY32, layer_scale=1.0), base="study", reuse="G",
           steps=("bn_to_ln", "separate_downsampling")),
    Config("T", "J with L's layer scale 1.0 (the proxy `fidelity`): whether the layer-scale rule "
           "holds with the paper's stride-4 stems at 64 px; trains separate_downsampling and bn_to_ln (which must "
           "equal J's) and takes J's jobs",
           F_BUDGET | dict(resize=56, resolution=64), dataclasses.replace(FIDELITY, layer_scale=1.0), reuse="J",
           steps=("bn_to_ln", "separate_downsampling")),
]

PROBE_STEPS = ["recipe", "separate_downsampling"]
"""A probe trains only the two ends of the end-to-end comparison (ResNet-50 + recipe and the
final ConvNeXt), one seed: a cheap screen of budget knobs before a full 3-seed configuration."""
PROBES: list[tuple[str, dict[str, object]]] = [
    ("b128", dict(batch_size=128, lr=2e-3, lr_batch=128)),
    ("b64", dict(batch_size=64, lr=2e-3, lr_batch=64)),
    ("b64hi", dict(batch_size=64, lr=4e-3, lr_batch=64)),
    ("b32lo", dict(batch_size=32, lr=1e-3, lr_batch=32)),
    ("b32", dict(batch_size=32, lr=2e-3, lr_batch=32)),
    ("b32hi", dict(batch_size=32, lr=4e-3, lr_batch=32)),
    ("b16", dict(batch_size=16, lr=2e-3, lr_batch=16)),
    ("b16hi", dict(batch_size=16, lr=4e-3, lr_batch=16)),
    ("b32u8k", dict(batch_size=32, lr=4e-3, lr_batch=32, train_images=8000, epochs=1)),
    ("s24", dict(batch_size=32, lr=2e-3, lr_batch=32, train_images=24000, epochs=1)),
    ("s24hi", dict(batch_size=32, lr=4e-3, lr_batch=32, train_images=24000, epochs=1)),
]
"""Probes on top of OLD_QUICK with proxy B (`fidelity32`); every one tried is listed."""


def derive(base: Recipe, changes: dict[str, object], name: str) -> Recipe:
    """``base`` with ``changes``, the step-0 substitute tables changed alike (its lr drops kept
    at the original recipe's fractions of training)."""
    epochs = int(changes.get("epochs", base.epochs))  # type: ignore[call-overload]
    subs = {}
    for sub_name, sub in base.substitute.items():
        sub = dict(sub)
        for k in SCALE_KEYS:
            if k in changes:
                sub[k] = changes[k]
        if "decay_epochs" in sub:
            sub["decay_epochs"] = [round(f * epochs, 3) for f in RESNET_DECAY]
        subs[sub_name] = sub
    if not changes:
        return base
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

    recipe = derive(load_recipe(cfg.base), cfg.recipe, f"study_{cfg.name}")
    out = cfg.runs
    t0 = time.perf_counter()
    train_roadmap(None, data="fashion-mnist", recipe=recipe, seeds=seeds, out=out, device="cpu",
                  proxy=cfg.proxy, workers=workers, threads=1, progress=False, steps=list(cfg.steps) or None)
    wall = time.perf_counter() - t0
    build_report(out, OUT / cfg.name)
    meta = {"config": cfg.name, "what": cfg.what, "recipe_changes": cfg.recipe, "proxy": cfg.proxy.to_dict(),
            "seeds": seeds, "workers": workers, "wall_s_this_invocation": round(wall, 1), "machine": machine()}
    (OUT / cfg.name).mkdir(parents=True, exist_ok=True)
    (OUT / cfg.name / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def run_probes(names: list[str] | None, workers: int) -> None:
    from modernize.train import train_roadmap

    for name, changes in PROBES:
        if names is None or name in names:
            recipe = derive(load_recipe("quick"), OLD_QUICK | changes, f"probe_{name}")
            print(f"=== probe {name}: {changes}", flush=True)
            train_roadmap(None, data="fashion-mnist", recipe=recipe, seeds=[0], out=RUNS / "probe" / name,
                          steps=PROBE_STEPS, device="cpu", proxy=FIDELITY32, workers=workers, threads=1,
                          progress=False)


def probe_table() -> pd.DataFrame:
    """One row per probe: its changes and the two ends' top-1 (or why it has none)."""
    rows = []
    for name, changes in PROBES:
        row: dict[str, Any] = {"probe": name, **{k: changes.get(k, OLD_QUICK.get(k)) for k in
                                                 ("batch_size", "lr", "train_images", "epochs")}}
        for step in PROBE_STEPS:
            f = RUNS / "probe" / name / step / "seed0" / "result.json"
            res = json.loads(f.read_text()) if f.is_file() else {}
            row[step] = res.get("top1") if res.get("status") == "done" else "not finished"
        ends = [row[s] for s in PROBE_STEPS]
        row["final_minus_recipe"] = (round(ends[1] - ends[0], 2) if all(isinstance(v, float) for v in ends)
                                     else "")
        rows.append(row)
    return pd.DataFrame(rows)


def config_table(cfg: Config) -> tuple[pd.DataFrame, Any]:
    """Per-step top-1 of a configuration (and its run); with ``reuse``, the reused configuration's
    rows but for ``cfg.steps``, after checking that the first of them equals it at every seed."""
    from modernize.errors import ConfigError
    from modernize.report import load_run, summarize

    run = load_run(cfg.runs)
    table = summarize(run)
    if cfg.reuse is None:
        return table, run
    other = next(c for c in CONFIGS if c.name == cfg.reuse)
    check = cfg.steps[0]
    for seed in run.seeds:
        mine, theirs = (json.loads((r / check / f"seed{seed}" / "result.json").read_text()).get("top1")
                        for r in (cfg.runs, other.runs))
        if mine is None or mine != theirs:
            raise ConfigError(f"config {cfg.name}: {check} seed {seed} gave {mine}, config {cfg.reuse} {theirs}: "
                              f"the jobs are not the same, so {cfg.reuse}'s cannot stand in for the untrained steps")
    merged = summarize(load_run(other.runs)).set_index("step")
    own = table.set_index("step").loc[list(cfg.steps), merged.columns]
    merged = pd.concat([merged.drop(index=own.index), own]).loc[merged.index]  # own rows whole, NaN kept
    return merged.reset_index(), run


def study_row(cfg: Config) -> dict[str, Any]:
    """One configuration of the proxy study: per-step mean +- std and the paper checks."""
    from modernize.checks.fidelity import assess

    name, what = cfg.name, cfg.what
    table, run = config_table(cfg)
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


def write_study_summary(configs: list[Config], out: Path, *, machine: str) -> list[Path]:
    """``summary.csv`` and ``summary.md`` over every configuration of the proxy study."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [study_row(c) for c in configs]
    df = pd.DataFrame(rows)
    df.to_csv(out / "summary.csv", index=False)
    probes = probe_table()
    probes.to_csv(out / "probes.csv", index=False)
    head = ["config", "seeds", "robust_agree", "robust_disagree", "robust_inconclusive", "sign_matches",
            "binomial_p", "equivalence_fail", "final_minus_recipe", "ci_low", "ci_high"]
    steps = [c for c in df.columns if c not in head and c != "what"]
    md = ["# Proxy study: every configuration tried", "", f"Machine: {machine}. Command: "
          "`python scripts/proxy_study.py` then `python scripts/proxy_study.py --summary`. Top-1 % on the full "
          "10,000-image Fashion-MNIST test set, mean ± std over seeds.", "",
          *[f"- **{r['config']}**: {r['what']}" for r in rows], "",
          df[head].to_markdown(index=False), "", df[["config", *steps]].set_index("config").T.to_markdown(), "",
          "## Probes", "", f"`python scripts/proxy_study.py --probes`: on top of config A's recipe with proxy B, "
          f"one seed, only the steps {' and '.join(PROBE_STEPS)} (the two ends of the end-to-end comparison); "
          "a screen for full configurations, not evidence by itself. Probes marked 'not finished' were "
          "stopped to give the cores to a full configuration.", "", probes.to_markdown(index=False), ""]
    (out / "summary.md").write_text("\n".join(md))
    return [out / "summary.csv", out / "summary.md", out / "probes.csv"]


def main(argv: list[str] | None = None) -> int:
    from modernize.cli.argtypes import Extend, int_between  # the command line's own checks for the same flags

    p = argparse.ArgumentParser(prog="proxy_study.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", action=Extend, default=None, help="configuration names (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", action=Extend, default=[0, 1, 2])
    p.add_argument("--workers", type=int_between(1, 256, "--workers"), default=2,
                   help="jobs side by side in local processes (default 2: one per core here)")
    p.add_argument("--summary", action="store_true", help="only rebuild the summary from the runs (after training)")
    p.add_argument("--probes", nargs="*", default=None, metavar="NAME",
                   help="run the probes (all, or those named) instead of the configurations")
    args = p.parse_args(argv)
    for flag, given, known in (("--only", args.only, [c.name for c in CONFIGS]),
                               ("--probes", args.probes, [n for n, _ in PROBES])):
        unknown = sorted(set(given or ()) - set(known))
        if unknown:
            p.error(f"{flag}: unknown name(s) {', '.join(unknown)} (valid: {', '.join(known)})")
    if args.probes is not None and not args.summary:
        run_probes(args.probes or None, args.workers)
        return 0
    chosen = [c for c in CONFIGS if args.only is None or c.name in args.only]
    if not args.summary:
        for cfg in chosen:
            print(f"=== config {cfg.name}: {cfg.what}", flush=True)
            meta = run_config(cfg, args.seeds, args.workers)
            print(f"=== config {cfg.name} done in {meta['wall_s_this_invocation']} s", flush=True)
        return 0
    write_study_summary([c for c in CONFIGS if (c.runs / "run.json").is_file()], OUT, machine=machine())
    return 0


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` behind the library's error boundary: a bad flag value or a run folder trained
    with another configuration is one line and exit 2, as in ``modernize`` (``--debug``: traceback)."""
    from modernize.boundary import guarded_main

    return guarded_main(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
