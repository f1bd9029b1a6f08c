"""Battery cases: hostile image folders, signals, concurrent runs, the process's surroundings
(sections 7-10)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .harness import (
    FRESH_STARTUP_S,
    STEP,
    TIMEOUT_S,
    Ctx,
    Res,
    _scratch_skip,
    bench,
    bench_data,
    bomb_png,
    case,
    describe,
    flops,
    image_folder,
    job,
    one_line_error,
    png_bytes,
    report,
    snapshot,
    tiny_recipe,
    train,
)

# --- 7. image-folder data sets -------------------------------------------------------------------------

def _img_case(spoil: Callable[[Ctx, Path], Any], culprit: str | None, repair: Callable[[Ctx, Path], Any] | None = None,
              **kw: Any) -> Callable[[Ctx], None]:
    """A hostile image folder: refused naming the culprit (then, repaired, the same command trains),
    or (culprit None) trained."""
    def fn(ctx: Ctx) -> None:
        root = image_folder(ctx, **kw)
        spoil(ctx, root)
        argv = train(ctx, data=f"imagefolder:{root}")
        if culprit is None:
            ctx.ok(argv)
            ctx.done()
            return
        ctx.refused(argv, culprit, keep=[])
        if repair is not None:
            repair(ctx, root)
            ctx.ok(argv)
            ctx.done()
    return fn


def _replace_png(name: str) -> Callable[[Ctx, Path], None]:
    def fix(ctx: Ctx, root: Path) -> None:
        p = root / "train" / "a" / name
        if p.is_symlink() or p.exists():
            p.unlink()
        p.write_bytes(png_bytes())
    return fix


case("img-class-only-text")(_img_case(lambda c, r: ([p.unlink() for p in (r / "train" / "b").glob("*")],
                                                    (r / "train" / "b" / "notes.txt").write_text("x")),
                                      "b", lambda c, r: [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)]))
case("img-empty-class")(_img_case(lambda c, r: [p.unlink() for p in (r / "train" / "b").glob("*")], "train/b",
                                  lambda c, r: [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)]))
case("img-text-named-png")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_text("hello\n"), "0.png",
                                     _replace_png("0.png")))
case("img-truncated-png")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(png_bytes((64, 64))[:60]),
                                    "0.png", _replace_png("0.png")))
case("img-zero-bytes")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(b""), "0.png", _replace_png("0.png")))
case("img-bomb")(_img_case(lambda c, r: (r / "train" / "a" / "0.png").write_bytes(bomb_png()), "0.png", _replace_png("0.png")))
case("img-fifo")(_img_case(lambda c, r: ((r / "train" / "a" / "0.png").unlink(), os.mkfifo(r / "train" / "a" / "0.png")),
                           "0.png", _replace_png("0.png")))
case("img-dangling-symlink")(_img_case(lambda c, r: ((r / "train" / "a" / "0.png").unlink(),
                                                     os.symlink("/no/such.png", r / "train" / "a" / "0.png")),
                                       "0.png", _replace_png("0.png")))
case("img-not-utf8-name")(_img_case(lambda c, r: Path(os.fsdecode(bytes(r / "train" / "a") + b"/\xff\xfe.png")).write_bytes(b"junk"),
                                    ".png", lambda c, r: Path(os.fsdecode(bytes(r / "train" / "a") + b"/\xff\xfe.png")).unlink()))
case("img-symlink-loop")(_img_case(lambda c, r: os.symlink(".", r / "train" / "a" / "loop"), "loop",
                                   lambda c, r: (r / "train" / "a" / "loop").unlink()))
case("img-symlink-loops-empty-class")(_img_case(
    lambda c, r: ([p.unlink() for p in (r / "train" / "b").glob("*")], os.symlink(".", r / "train" / "b" / "l1"),
                  os.symlink("..", r / "train" / "b" / "l2")), "train/b",
    lambda c, r: ([(r / "train" / "b" / n).unlink() for n in ("l1", "l2")],
                  [(r / "train" / "b" / f"{i}.png").write_bytes(png_bytes()) for i in range(16)])))
case("img-val-extra-class")(_img_case(lambda c, r: ((r / "val" / "z").mkdir(), (r / "val" / "z" / "0.png").write_bytes(png_bytes())),
                                      "val", lambda c, r: shutil.rmtree(r / "val" / "z")))
case("img-no-val")(_img_case(lambda c, r: shutil.rmtree(r / "val"), "val",
                             lambda c, r: shutil.copytree(r / "train", r / "val")))
case("img-train-files-only")(_img_case(lambda c, r: ([shutil.rmtree(d) for d in (r / "train").iterdir()],
                                                     (r / "train" / "x.png").write_bytes(png_bytes())), "train"))
case("img-one-pixel")(_img_case(lambda c, r: [p.write_bytes(png_bytes((1, 1))) for p in r.rglob("*.png")], None))
case("img-mixed-modes")(_img_case(lambda c, r: [p.write_bytes(png_bytes((16, 16), m, 7)) for p, m in
                                                zip(sorted(r.rglob("*.png")), ["RGBA", "I;16", "P", "1", "RGB", "LA"] * 10)],
                                  None))
@case("img-long-tmpdir")
def _long_tmpdir(ctx: Ctx) -> None:
    """TMPDIR too long for the loader workers' AF_UNIX sockets: a warning, then the images load in
    the main process (the loader used to wait forever for the workers)."""
    tmp = ctx.root / ".tmp" / ("t" * 90)
    tmp.mkdir(parents=True)
    root = image_folder(ctx)
    ctx.ok(train(ctx, data=f"imagefolder:{root}"), env={"TMPDIR": str(tmp)}, warn="TMPDIR")
    ctx.done()


case("img-unicode-classes")(_img_case(lambda c, r: None, None, classes=("クラス", "ß✓")))


# --- 8. signals ----------------------------------------------------------------------------------------

AUG = "modernize.train.loop:train_step"
"""One training iteration (the plan's timing runs the same step through its own import: not hooked)."""
SIGNAL_POINTS = {"start": "modernize.cli:_dispatch", "loading": "*:load_data", "training": AUG,
                 "evaluation": "*:evaluate"}


def _signal_case(sig: str, where: str) -> Callable[[Ctx], None]:
    """A stop at a point of a tiny run: exit 130, nothing half-written (a resumable checkpoint when
    training had started), and the same command then finishes with the uninterrupted run's top-1."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.shard.template()[1]
        ctx.stopped(train(ctx), hooks=[("signal", SIGNAL_POINTS[where], sig, 1)])
        if where in ("training", "evaluation"):
            r = ctx.result()
            if r.get("status") != "running" or not job(ctx, "last.pt").is_file():
                ctx.fail("wrong", f"stopped in {where}: result {r.get('status')!r}, last.pt "
                                  f"{'present' if job(ctx, 'last.pt').is_file() else 'missing'}")
        elif (ctx.run / STEP).exists():
            ctx.fail("wrong", f"stopped at {where}: a job folder was written")
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _sig in ("SIGINT", "SIGTERM"):
    for _where in SIGNAL_POINTS:
        case(f"signal-{_sig.lower()}-{_where}")(_signal_case(_sig, _where))


@case("signal-sigterm-precise-bn")
def _sig_bn(ctx: Ctx) -> None:
    rec = tiny_recipe(ctx, "bn", precise_bn_batches=1)
    ctx.ok(train(ctx, out=ctx.root / "ref", recipe=rec))
    ref = ctx.result(ctx.root / "ref")["top1"]
    ctx.stopped(train(ctx, recipe=rec), hooks=[("signal", "*:precise_bn", "SIGTERM", 1)])
    ctx.ok(train(ctx, recipe=rec))
    ctx.done(ref)


@case("signal-sigkill-training-then-resume")
def _sig_kill(ctx: Ctx) -> None:
    top1 = ctx.shard.template()[1]
    res = ctx.cli(train(ctx, "--ckpt-every", "1"), hooks=[("signal", AUG, "SIGKILL", 2)])
    if res.rc != -9:
        ctx.fail("fail", f"expected death by SIGKILL, got {res.brief()}")
    ctx.ok(train(ctx, "--ckpt-every", "1"))
    ctx.done(top1)


@case("signal-double-sigint")
def _sig_double(ctx: Ctx) -> None:
    top1 = ctx.shard.template()[1]
    ctx.stopped(train(ctx), hooks=[("signal", AUG, "SIGINT", 1), ("signal", AUG, "SIGINT", 1)])
    ctx.ok(train(ctx))
    ctx.done(top1)


@case("signal-between-jobs")
def _sig_between(ctx: Ctx) -> None:
    ctx.stopped(train(ctx, steps=(STEP, "kernel_7")), hooks=[("after", "*:run_job", "SIGTERM", 1)])
    ctx.ok(train(ctx, steps=(STEP, "kernel_7")))
    ctx.done(ctx.shard.template()[1])
    ctx.done(step="kernel_7")


@case("signal-sigterm-in-report-after-training")
def _sig_report(ctx: Ctx) -> None:
    ctx.stopped(train(ctx), hooks=[("signal", "*:save", "SIGTERM", 2)])
    ctx.done(ctx.shard.template()[1], report=False)
    ctx.ok(report(ctx))
    ctx.done(ctx.shard.template()[1])


@case("signal-sigint-report")
def _sig_report2(ctx: Ctx) -> None:
    ctx.trained()
    ctx.stopped(report(ctx, None, "--out", str(ctx.root / "rep")), hooks=[("signal", "*:save", "SIGINT", 3)])
    ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))


@case("signal-sigint-flops")
def _sig_flops(ctx: Ctx) -> None:
    ctx.stopped(flops(ctx), hooks=[("signal", "*:count", "SIGINT", 1)])
    if (ctx.root / "flops_out").exists():
        ctx.fail("wrong", "flops stopped before counting, yet wrote flops_out/")
    ctx.ok(flops(ctx))


@case("signal-sigterm-flops")
def _sig_flops_term(ctx: Ctx) -> None:
    ctx.stopped(flops(ctx), hooks=[("signal", "*:count", "SIGTERM", 1)])
    ctx.ok(flops(ctx))


@case("signal-sigint-bench")
def _sig_bench(ctx: Ctx) -> None:
    ctx.stopped(bench(ctx), hooks=[("signal", "*:bench_spec", "SIGINT", 1)])
    ctx.ok(bench(ctx))


@case("signal-sigterm-describe")
def _sig_describe(ctx: Ctx) -> None:
    ctx.stopped(describe(), hooks=[("signal", SIGNAL_POINTS["start"], "SIGTERM", 1)])


@case("signal-sigint-bench-data")
def _sig_bd(ctx: Ctx) -> None:
    ctx.stopped(bench_data(ctx), hooks=[("signal", "*:worker_rate", "SIGINT", 1)])
    left = list((ctx.root / ".tmp").glob("*"))
    if left:
        ctx.fail("outside", f"bench-data stopped, temp files left behind: {left[:3]}")


@case("signal-real-sigint-fresh-process", fresh=True)
def _sig_fresh(ctx: Ctx) -> None:
    """A real Ctrl-C from outside (no hook) to a fresh `python -m modernize.cli train` once it
    has started training; rerun resumes to the same numbers as an uninterrupted run."""
    rec = tiny_recipe(ctx, "longer", epochs=2)
    argv = train(ctx, data="synthetic:512", recipe=rec)
    p = ctx.spawn(argv, fresh=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < TIMEOUT_S + FRESH_STARTUP_S:
        if "run " in (p.out.read_text(errors="replace") if p.out.exists() else ""):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, signal.SIGINT)
    res = ctx.wait(p)
    ctx._check_basics(res)
    if res.rc not in (130, 0):
        ctx.fail("fail", f"Ctrl-C: expected exit 130, got {res.brief()}")
    ctx.ok(argv, fresh=False)
    ctx.ok(train(ctx, data="synthetic:512", recipe=rec, out=ctx.root / "ref"), fresh=False)
    ctx.done(ctx.result(ctx.root / "ref")["top1"])


# --- 9. concurrent runs on one RUN_DIR -------------------------------------------------------------

def _together(ctx: Ctx, argvs: Sequence[list[str]]) -> list[Res]:
    before = snapshot(ctx.root, skip=_scratch_skip(ctx.root))
    procs = [ctx.spawn(a) for a in argvs]
    results = [ctx.wait(p) for p in procs]
    ctx._check_writes(before, [ctx.run], argvs[0])
    for r in results:
        ctx._check_basics(r)
    return results


@case("concurrent-same-command-two-seeds")
def _conc_same(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx, "--seeds", "0", "1")] * 2)
    if [r.rc for r in rs] != [0, 0]:
        ctx.fail("fail", f"two identical trains: exit codes {[r.rc for r in rs]}: {rs[0].last[:120]} | {rs[1].last[:120]}")
    ctx.done(ctx.shard.template()[1])
    ctx.done(seed=1)


@case("concurrent-three-one-job")
def _conc_three(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx)] * 3)
    if [r.rc for r in rs] != [0, 0, 0]:
        ctx.fail("fail", f"three identical trains: exit codes {[r.rc for r in rs]}")
    trained = sum(bool(re.search(rf"{STEP} seed 0: done, top1", r.out)) for r in rs)
    if trained != 1:
        ctx.fail("wrong", f"one job trained {trained} times by three processes")
    ctx.done(ctx.shard.template()[1])


@case("concurrent-different-configs")
def _conc_diff(ctx: Ctx) -> None:
    rs = _together(ctx, [train(ctx), train(ctx, recipe=tiny_recipe(ctx, "other", lr=1e-3))])
    codes = sorted(r.rc or 0 for r in rs)
    if codes != [0, 2]:
        ctx.fail("fail", f"two different configs on one RUN_DIR: exit codes {[r.rc for r in rs]} (expected one 0, one 2)")
    loser = next(r for r in rs if r.rc == 2)
    one_line_error(ctx, loser, ["run.json", "seed0"])
    ctx.done()


# --- 10. the process's own surroundings ------------------------------------------------------------

@case("stdout-closed-pipe")
def _closed_pipe(ctx: Ctx) -> None:
    res = ctx.cli(["describe", "--no-counts"], stdout="closed-pipe")
    if res.rc == 1 or "Exception ignored" in res.err or len(res.lines) > 1:
        ctx.fail("fail", f"stdout closed early: {res.brief()} ({res.err[-200:]!r})")


@case("stdout-dev-full")
def _dev_full(ctx: Ctx) -> None:
    res = ctx.cli(flops(ctx), stdout="devfull")
    one_line_error(ctx, res, ["No space left", "stdout"])
    if "Exception ignored" in res.err:
        ctx.fail("fail", f"stdout full: {res.err[-200:]!r}")


@case("out-not-utf8-bytes")
def _not_utf8_out(ctx: Ctx) -> None:
    out = ctx.root / os.fsdecode(b"o\xff\xfe")
    res = ctx.ok(flops(ctx)[:-1] + [str(out)])
    if not (out / "flops.csv").is_file():
        ctx.fail("wrong", f"flops exited 0 without writing {out}/flops.csv ({res.brief()})")


@case("python-m-modernize", fresh=True)
def _python_m(ctx: Ctx) -> None:
    ctx.ok(describe(), fresh=True, module="modernize")


@case("fresh-process-bad-flag", fresh=True)
def _fresh_flag(ctx: Ctx) -> None:
    ctx.refused(["flops", "--resolution", "nan"], "--resolution", fresh=True)


