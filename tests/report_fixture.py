"""A RUN_DIR fixture in the training engine's format, written through the run-folder schema
(``modernize.runfolder``), for the report tests (and for eyeballing the figures:
``python tests/report_fixture.py OUT_DIR`` writes one and reports it)."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

from modernize import runfolder
from modernize.roadmap import load_roadmap
from modernize.runfolder import JobResult, LogRow, RunMeta

RECIPE = "fashion_small"


def write_result(folder: Path, **result: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    runfolder.write_result(folder, JobResult(recipe=RECIPE, fingerprint="fixture", **result))


def write_log(folder: Path, final_top1: float, epochs: int, *, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for e in range(1, epochs + 1):
        frac = e / epochs
        top1 = final_top1 - 25 * (1 - frac) ** 2 + rng.uniform(-0.3, 0.3) * (1 - frac)
        rows.append(LogRow(epoch=e, train_loss=round(2.3 * (1 - frac) + 0.2, 4),
                           val_loss=round(2.0 * (1 - frac) + 0.3, 4), top1=round(top1, 3),
                           top5=round(min(99.9, top1 + 6), 3), lr=round(0.004 * (1 - frac), 6), img_per_s=1500.0,
                           seconds=round(12.5 * e, 1)))
    runfolder.write_log(folder, rows)


def make_run(run_dir: Path, *, roadmap: str = "resnet50_to_convnext_t", seeds: tuple[int, ...] = (0, 1, 2),
             epochs: int = 10, failed: dict[str, int] | None = None, missing_steps: tuple[str, ...] = (),
             missing_seeds: dict[str, tuple[int, ...]] | None = None, resolution: int = 32,
             top1: dict[str, list[float]] | None = None, bench: bool = False) -> dict[str, dict[int, float]]:
    """Write a RUN_DIR; returns the top-1 written per step and seed (the ground truth).

    ``failed``: step -> failing epoch (every seed fails there). ``missing_steps``: no folder at
    all. ``missing_seeds``: step -> seeds without a result. ``top1``: step -> per-seed values."""
    rm = load_roadmap(roadmap)
    failed, missing_seeds, top1 = failed or {}, missing_seeds or {}, top1 or {}
    rng = random.Random(0)
    (run_dir).mkdir(parents=True, exist_ok=True)
    runfolder.write_run_meta(run_dir, RunMeta(
        roadmap={"name": rm.name, "path": str(rm.path)}, recipe={"name": RECIPE, "values": {"epochs": epochs}},
        step_recipes={}, data="fashion-mnist", proxy={}, seeds=list(seeds), steps=rm.names, device="cpu",
        world_size=1, per_process_batch=32, global_batch=32, lr=0.004, torch="2.14", compared={},
        config_hash="fixture"))
    truth: dict[str, dict[int, float]] = {}
    scale = (resolution / 224) ** 2
    for i, step in enumerate(rm):
        if step.name in missing_steps:
            continue
        paper = float(step.paper.get("paper_top1") or 80.0)
        base = 89.0 + 0.45 * (paper - 76.0) + (0.4 if i % 3 == 0 else -0.2)
        gmacs = round(float(step.paper.get("analytic_gmacs") or 4.0) * scale, 6)
        params = float(step.paper.get("analytic_params_m") or 25.0) - 2.0
        truth[step.name] = {}
        for k, seed in enumerate(seeds):
            if seed in missing_seeds.get(step.name, ()):
                continue
            folder = run_dir / step.name / f"seed{seed}"
            common = dict(step=step.name, seed=seed, gmacs=gmacs, params_m=params, resolution=resolution,
                          epochs=epochs, top5=None)
            if step.name in failed:
                e = failed[step.name]
                write_log(folder, base - 20, e - 1, rng=rng)
                write_result(folder, status="failed", top1=None, best_top1=None, epochs_done=e - 1, wall_s=30.0 * e,
                             failed_epoch=e, reason=f"loss is NaN at epoch {e}", **common)
                continue
            value = top1[step.name][k] if step.name in top1 else round(base + rng.gauss(0, 0.25), 3)
            truth[step.name][seed] = value
            write_log(folder, value, epochs, rng=rng)
            common["top5"] = round(min(99.9, value + 6.1), 3)
            write_result(folder, status="done", top1=value, best_top1=value + 0.05, epochs_done=epochs,
                         wall_s=300.0, failed_epoch=None, reason=None, **common)
    if bench:
        rows = ["step,resolution,batch,infer_img_s,train_img_s,device"]
        for i, step in enumerate(rm):
            rows.append(f"{step.name},32,256,{4000 - 90 * i:.1f},{1300 - 30 * i:.1f},cpu")
        (run_dir / "bench.csv").write_text("\n".join(rows) + "\n")
    return truth


def small_roadmap(folder: Path) -> Path:
    """A four-step roadmap (one branch) with the paper's R50 rows: fast reports for tests."""
    paper = Path(__file__).resolve().parent.parent / "ablations" / "paper" / "paper_roadmap_r50.csv"
    path = folder / "small.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""name = "small"
base = "resnet50"
paper = "{paper}"
[[steps]]
name = "resnet50"
paper_row = "resnet50"
[[steps]]
name = "stage_ratio"
paper_row = "stage_ratio"
apply = {{ transform = "stage_ratio", depths = [3, 3, 9, 3] }}
[[steps]]
name = "depthwise"
paper_row = "depthwise"
adopted = false
apply = "depthwise"
[[steps]]
name = "patchify_stem"
paper_row = "patchify_stem"
apply = "patchify_stem"
""")
    return path


def realistic(run_dir: Path) -> dict[str, dict[int, float]]:
    return make_run(run_dir, failed={"kernel_11": 4}, missing_steps=("kernel_9",),
                    missing_seeds={"gelu": (2,)}, bench=True)


if __name__ == "__main__":
    from modernize.report import build_report

    target = Path(sys.argv[1])
    realistic(target / "run")
    for p in build_report(target / "run", target / "report"):
        print(p)
    _ = math
