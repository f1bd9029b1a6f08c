"""Battery cases: a run folder edited, corrupted or moved under a command; --force; OS errors at
--out (sections 4-6)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import (
    NONFINITE,
    NOT_UTF8,
    RANDOM,
    STEP,
    Ctx,
    bench,
    case,
    flops,
    job,
    one_line_error,
    readonly,
    refuse_on_trained,
    report,
    report_lines,
    small_roadmap,
    tiny_recipe,
    train,
)

# --- 4. an edited roadmap / recipe / data on an old RUN_DIR; deleted run.json; --force ------------------

def _edited_depths(ctx: Ctx) -> Path:
    return small_roadmap(ctx, lambda t: t.replace("depths = [3, 3, 9, 3]", "depths = [2, 2, 6, 2]"), "edited.toml")


@case("rundir-edited-roadmap-refused-then-force")
def _edited_roadmap(ctx: Ctx) -> None:
    ctx.trained()
    old = (job(ctx, "result.json")).read_bytes()
    ctx.refused(train(ctx, roadmap=_edited_depths(ctx)), [f"{STEP}/seed0"])
    ctx.ok(train(ctx, "--force", roadmap=_edited_depths(ctx)))
    moved = list((ctx.run / ".replaced").glob(f"*/{STEP}/seed0/result.json"))
    if len(moved) != 1 or moved[0].read_bytes() != old:
        ctx.fail("wrong", f"--force: the old job is not kept intact under .replaced/ ({moved})")
    ctx.done()


@case("rundir-cosmetic-roadmap-edit-reused")
def _cosmetic(ctx: Ctx) -> None:
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    rm = small_roadmap(ctx, lambda t: t.replace('description = "', 'description = "(my copy) ').replace(
        "[[steps]]", "# an edited comment\n[[steps]]", 1), "cosmetic.toml")
    ctx.ok(train(ctx, roadmap=rm))
    if job(ctx, "result.json").read_bytes() != before:
        ctx.fail("wrong", "a description/comment edit retrained the job")
    ctx.done(top1)


@case("rundir-edited-recipe-refused")
def _edited_recipe(ctx: Ctx) -> None:
    refuse_on_trained(ctx, lambda c: train(c, recipe=tiny_recipe(c, "tiny2", lr=1e-3)), ["seed0"])


@case("rundir-edited-recipe-force")
def _edited_recipe_force(ctx: Ctx) -> None:
    ctx.trained()
    ctx.ok(train(ctx, "--force", recipe=tiny_recipe(ctx, "tiny2", lr=1e-3)))
    if not list((ctx.run / ".replaced").glob(f"*/{STEP}/seed0/result.json")):
        ctx.fail("wrong", "--force with another recipe: the old job was not moved to .replaced/")
    ctx.done()


@case("rundir-renamed-recipe-reused")
def _renamed_recipe(ctx: Ctx) -> None:
    """The same recipe values under another file name: run.json records the name, so the run is
    refused naming it (or accepted); either way the finished job is reused, never retrained."""
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    argv = train(ctx, recipe=shutil.copy(tiny_recipe(ctx), ctx.root / "same_values.toml"))
    res = ctx.cli(argv)
    if res.rc == 2:
        one_line_error(ctx, res, "recipe.name")
        ctx.ok(argv + ["--force"])
    elif res.rc != 0:
        ctx.fail("fail", f"renamed recipe: {res.brief()}")
    if job(ctx, "result.json").read_bytes() != before or (ctx.run / ".replaced").exists():
        ctx.fail("wrong", "the same recipe values under another file name retrained the job")
    ctx.done(top1)


@case("rundir-changed-data-refused")
def _changed_data(ctx: Ctx) -> None:
    refuse_on_trained(ctx, lambda c: train(c, data="synthetic:48"), ["seed0"])


@case("rundir-force-identical-moves-nothing")
def _force_identical(ctx: Ctx) -> None:
    top1 = ctx.trained()
    before = job(ctx, "result.json").read_bytes()
    ctx.ok(train(ctx, "--force"))
    if (ctx.run / ".replaced").exists() or job(ctx, "result.json").read_bytes() != before:
        ctx.fail("wrong", "--force with an identical config moved or retrained the job")
    ctx.done(top1)


@case("runjson-deleted-same-config")
def _rj_deleted(ctx: Ctx) -> None:
    top1 = ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.ok(train(ctx))
    if not (ctx.run / "run.json").is_file():
        ctx.fail("wrong", "run.json not written again")
    ctx.done(top1)


@case("runjson-deleted-other-config-refused")
def _rj_deleted_other(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.refused(train(ctx, data="synthetic:48"), ["seed0"])
    ctx.ok(train(ctx))
    ctx.done(ctx.shard.template()[1])


@case("runjson-deleted-report-refused")
def _rj_deleted_report(ctx: Ctx) -> None:
    ctx.trained()
    (ctx.run / "run.json").unlink()
    ctx.refused(report(ctx), "run.json")
    ctx.ok(train(ctx))
    ctx.ok(report(ctx))
    ctx.done(ctx.shard.template()[1])


# --- 5. corrupt run files --------------------------------------------------------------------------

CORRUPT = {"empty": b"", "random": RANDOM, "not-utf8": NOT_UTF8, "array": b"[1, 2, 3]",
           "deep": b"[" * 100_000 + b"]" * 100_000}


def _corrupt(ctx: Ctx, rel: str, content: bytes | str) -> Path:
    path = ctx.run / rel
    if content == "fifo":
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _result_case(name: str, content: bytes | str, report_rc: int) -> Callable[[Ctx], None]:
    """Report: refused naming result.json (or a clean table without it); train: the job is repaired
    from its checkpoint (same top-1), then the report is right."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        _corrupt(ctx, f"{STEP}/seed0/result.json", content)
        if report_rc == 2:
            ctx.refused(report(ctx, None, "--out", str(ctx.root / "rep")), "result.json", keep=[ctx.run])
        else:
            ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _name in ("empty", "random", "not-utf8", "array"):
    case(f"result-json-{_name}")(_result_case(_name, CORRUPT[_name], 2))
case("result-json-status-weird")(_result_case("weird", json.dumps({"status": "weird", "top1": 5.0}), 2))
case("report-result-json-deep")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", CORRUPT["deep"]),
                                             ctx.refused(report(ctx), "result.json")))
case("report-result-json-fifo")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", "fifo"),
                                             ctx.ok(report(ctx))))  # shown as missing; must not block
case("train-result-json-deep")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", CORRUPT["deep"]),
                                            ctx.ok(train(ctx)), ctx.done(ctx.shard.template()[1])))
case("train-result-json-fifo")(lambda ctx: (ctx.trained(), _corrupt(ctx, f"{STEP}/seed0/result.json", "fifo"),
                                            ctx.ok(train(ctx)), ctx.done(ctx.shard.template()[1])))


def _result_value_case(key: str, raw: str) -> Callable[[Ctx], None]:
    """A finished job's result.json edited to hold NaN / Infinity: the report never prints a
    non-finite number and does not count the job as a result. Text where a number belongs is the
    wrong type: the report refuses it, naming the file and the key (issue 23: never coerced)."""
    def fn(ctx: Ctx) -> None:
        ctx.trained()
        path = job(ctx, "result.json")
        text = re.sub(rf'"{key}": [^,\n}}]+', f'"{key}": {raw}', path.read_text())
        path.write_text(text)
        if raw.startswith('"'):
            res = ctx.refused(report(ctx, None, "--out", str(ctx.root / "rep")), [f"'{key}'"])
            if "result.json" not in res.last:
                ctx.fail("fail", f"the error line does not name result.json: {res.last[:200]!r}")
            return
        res = ctx.ok(report(ctx, None, "--out", str(ctx.root / "rep")))
        md = (ctx.root / "rep" / "table.md").read_text()
        bad = [ln for ln in md.splitlines() if ln.startswith(f"| {STEP} ") and NONFINITE.search(ln)]
        if bad:
            ctx.fail("wrong", f"table.md shows a non-finite number: {bad[0][:200]}")
        if key == "top1":
            row = [ln for ln in res.out.splitlines() if ln.strip().startswith(STEP)]
            if row and re.search(r"\d+\.\d\d \(n=1\)", row[0]):
                ctx.fail("wrong", f"a top1 of {raw} is shown as a result: {row[0].strip()[:160]}")
    return fn


for _key, _raw in [("top1", "NaN"), ("top1", "Infinity"), ("top1", '"abc"'), ("top1", "-Infinity"),
                   ("gmacs", "NaN"), ("params_m", "Infinity")]:
    case(f"result-json-{_key}-{_raw.strip(chr(34)).lower()}")(_result_value_case(_key, _raw))


def _config_case(content: bytes | str | None) -> Callable[[Ctx], None]:
    """config.json unreadable or missing: train refuses naming the job; --force retrains it (the old
    folder kept under .replaced/), with the uninterrupted run's numbers."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        if content is None:
            job(ctx, "config.json").unlink()
        else:
            _corrupt(ctx, f"{STEP}/seed0/config.json", content)
        ctx.refused(train(ctx), ["seed0"])
        ctx.ok(train(ctx, "--force"))
        ctx.done(top1)
    return fn


for _name in ("empty", "random", "not-utf8", "array", "deep"):
    case(f"config-json-{_name}")(_config_case(CORRUPT[_name]))
case("config-json-nan-fingerprint")(_config_case('{"fingerprint": NaN, "fingerprint_parts": {"seed": Infinity}}'))
case("config-json-deleted")(_config_case(None))
case("config-json-fifo")(_config_case("fifo"))


def _log_case(content: bytes | str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        path = job(ctx, "log.csv")
        if content == "dir":
            path.unlink()
            path.mkdir()
        else:
            _corrupt(ctx, f"{STEP}/seed0/log.csv", content)
        ctx.ok(report(ctx))
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _id, _content in [("empty", b""), ("random", RANDOM), ("not-utf8", b"epoch,top1\n1,\xff\xfe\n"),
                      ("nan-values", "epoch,train_loss,val_loss,top1,top5,lr,img_per_s,seconds\n1,nan,inf,nan,-inf,0,0,0\n"),
                      ("text-values", "epoch,top1\none,high\n"), ("directory", "dir")]:
    case(f"log-csv-{_id}")(_log_case(_content))


def _ckpt_case(make: Callable[[Ctx, Path], None], *, warn: str | None = "last.pt",
               refuse: str | None = None, fix: Callable[[Ctx], Any] | None = None) -> Callable[[Ctx], None]:
    """The job's result.json says running (the process died) and last.pt is hostile: the job is
    retrained or resumed to the uninterrupted run's numbers, or refused naming the checkpoint
    (then removing it is enough)."""
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        r = job(ctx, "result.json")
        r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
        make(ctx, job(ctx, "last.pt"))
        if refuse:
            ctx.refused(train(ctx), refuse, keep=[])
            if fix is not None:
                fix(ctx)
                ctx.ok(train(ctx))
            else:
                ctx.ok(train(ctx, "--force"))
        else:
            ctx.ok(train(ctx), warn=warn)
        ctx.done(top1)
    return fn


def in_child(fn: Callable[[], Any]) -> None:
    """Run ``fn`` in a forked child: a torch op in this process can start a thread, and a later
    fork of a process with threads may hang (the children must be forked from a torch-idle parent)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("setup in a child process failed (see its traceback above)")


def _torch_save(obj: Any) -> Callable[[Ctx, Path], None]:
    def make(ctx: Ctx, path: Path) -> None:
        import torch

        in_child(lambda: torch.save(obj, path))
    return make


case("last-pt-empty")(_ckpt_case(lambda c, p: p.write_bytes(b"")))
case("last-pt-random")(_ckpt_case(lambda c, p: p.write_bytes(RANDOM)))
case("last-pt-list")(_ckpt_case(_torch_save([1, 2, 3])))
case("last-pt-wrong-model")(_ckpt_case(_torch_save({"model": {"w": 1}, "optimizer": {}, "scheduler": {}, "epoch": 0,
                                                    "iter": 0, "rng": [], "scaler": {}})))
case("last-pt-directory")(_ckpt_case(lambda c, p: (p.unlink(), p.mkdir()), refuse="last.pt",
                                     fix=lambda c: job(c, "last.pt").rmdir()))
case("last-pt-fifo")(_ckpt_case(lambda c, p: (p.unlink(), os.mkfifo(p)), warn=None))


@case("last-pt-nan-weights")
def _nan_weights(ctx: Ctx) -> None:
    """A checkpoint whose weights were edited to NaN, mid-epoch: the resumed job fails on a
    non-finite loss and says so (result.json and the report), never a number."""
    import torch

    ctx.trained()
    ck_path = job(ctx, "last.pt")

    def edit() -> None:
        ck = torch.load(ck_path, weights_only=False)
        ck["model"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in ck["model"].items()}
        ck["epoch"], ck["iter"], ck["log"], ck["best_top1"] = 0, 1, [], -1.0  # a checkpoint from mid-epoch 1
        torch.save(ck, ck_path)

    in_child(edit)
    r = job(ctx, "result.json")
    r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
    res = ctx.ok(train(ctx))
    got = ctx.result()
    if got.get("status") != "failed" or got.get("top1") is not None:
        ctx.fail("wrong", f"NaN weights: result {got.get('status')!r}, top1 {got.get('top1')!r} (expected failed, no top1)")
    row = [ln for ln in report_lines(res.out) if ln.strip().startswith(STEP)]
    if not row or "failed" not in row[0]:
        ctx.fail("wrong", f"the report does not show the failed job: {row[:1]}")


case("last-and-prev-pt-corrupt")(_ckpt_case(lambda c, p: (p.write_bytes(b"x"), p.with_name("prev.pt").write_bytes(b"y"))))


def _claim_case(body: bytes, age_s: float, *extra: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        r = job(ctx, "result.json")
        r.write_text(json.dumps(json.loads(r.read_text()) | {"status": "running"}))
        claim = job(ctx, "claim.json")
        claim.write_bytes(body)
        os.utime(claim, (time.time() - age_s, time.time() - age_s))
        ctx.ok(train(ctx, *extra))
        ctx.done(top1)
        if claim.exists():
            ctx.fail("wrong", "claim.json left behind after the job finished")
    return fn


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


case("claim-garbage-old")(_claim_case(RANDOM, 3600))
case("claim-dead-owner")(lambda ctx: _claim_case(json.dumps({"host": __import__("socket").gethostname(),
                                                               "pid": _dead_pid(), "started": 0, "token": "x"}).encode(),
                                                   0)(ctx))
case("claim-silent-owner-elsewhere")(_claim_case(json.dumps({"host": "another-host", "pid": 1, "started": 0,
                                                             "token": "x"}).encode(), 0, "--claim-timeout", "5"))


def _runjson_train(content: bytes | str, culprit: str, fix: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        before = job(ctx, "result.json").read_bytes()
        _corrupt(ctx, "run.json", content)
        ctx.refused(train(ctx), culprit)
        fix(ctx)
        if job(ctx, "result.json").read_bytes() != before:
            ctx.fail("wrong", "the finished job was retrained")
        ctx.done(top1)
    return fn


case("runjson-empty-train")(_runjson_train(b"", "run.json", lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))
case("runjson-nan-train")(_runjson_train('{"config_hash": NaN}', "run.json",
                                         lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))
case("runjson-deep-train")(_runjson_train(CORRUPT["deep"], "run.json",
                                          lambda c: ((c.run / "run.json").unlink(), c.ok(train(c)))))


@case("runjson-fifo-report-then-train")
def _rj_fifo(ctx: Ctx) -> None:
    top1 = ctx.trained()
    _corrupt(ctx, "run.json", "fifo")
    ctx.refused(report(ctx), "run.json")
    ctx.ok(train(ctx))
    ctx.done(top1)


REPORT_RUNJSON = [  # run.json edits the report must refuse, naming run.json
    ("empty", b""), ("random", RANDOM), ("deep", CORRUPT["deep"]), ("seeds-empty", None), ("seeds-bool", None),
    ("seeds-nan", None),
]


def _report_runjson(name: str, content: bytes | None) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        top1 = ctx.trained()
        path = ctx.run / "run.json"
        if content is not None:
            path.write_bytes(content)
        else:
            meta = json.loads(path.read_text())
            if name == "seeds-empty":
                meta["seeds"] = []
            elif name == "seeds-bool":
                meta["seeds"] = [True]
            elif name == "seeds-nan":
                meta["seeds"] = [float("nan")]
            path.write_text(json.dumps(meta))
        ctx.refused(report(ctx), "run.json")
        path.unlink()
        ctx.ok(train(ctx))
        ctx.done(top1)
    return fn


for _name, _content in REPORT_RUNJSON:
    case(f"report-runjson-{_name}")(_report_runjson(_name, _content))


@case("report-bench-csv-random")
def _bench_random(ctx: Ctx) -> None:
    top1 = ctx.trained()
    (ctx.run / "bench.csv").write_bytes(RANDOM)
    ctx.refused(report(ctx), "bench.csv")
    (ctx.run / "bench.csv").unlink()
    ctx.ok(report(ctx))
    ctx.done(top1)


@case("report-bench-csv-nonfinite")
def _bench_inf(ctx: Ctx) -> None:  # refused naming the file and row, then the corrected folder reports
    ctx.trained()
    (ctx.run / "bench.csv").write_text(f"step,gmacs,infer_img_s,train_img_s\n{STEP},,inf,nan\n")
    ctx.refused(report(ctx), "bench.csv")
    (ctx.run / "bench.csv").unlink()
    ctx.ok(report(ctx))


@case("report-runjson-roadmap-nowhere")
def _roadmap_nowhere(ctx: Ctx) -> None:  # the run folder's copy of its roadmap (.source/) is read instead
    top1 = ctx.trained()
    path = ctx.run / "run.json"
    meta = json.loads(path.read_text())
    meta["roadmap"] = {"name": "no_such_roadmap", "path": "/no/such/roadmap.toml"}
    path.write_text(json.dumps(meta))
    ctx.ok(report(ctx))
    ctx.done(top1)


@case("report-rundir-is-file")
def _rd_file(ctx: Ctx) -> None:
    ctx.refused(["report", str(ctx.w("run", "x"))], "run")


@case("report-rundir-symlink-loop")
def _rd_loop(ctx: Ctx) -> None:
    os.symlink("loop", ctx.root / "loop")
    ctx.refused(["report", str(ctx.root / "loop")], "loop")


@case("report-rundir-empty")
def _rd_empty(ctx: Ctx) -> None:
    ctx.run.mkdir()
    ctx.refused(report(ctx), "run.json")


@case("report-cwd-deleted")
def _cwd_gone(ctx: Ctx) -> None:
    ctx.trained()
    ctx.ok(report(ctx), hooks=[("cwd-gone", "")])


@case("train-step-folder-is-file")
def _step_file(ctx: Ctx) -> None:
    top1 = ctx.trained()
    shutil.move(ctx.run / STEP, ctx.root / "saved")
    (ctx.run / STEP).write_text("not a folder")
    ctx.refused(train(ctx), STEP, keep=[])
    (ctx.run / STEP).unlink()
    shutil.move(ctx.root / "saved", ctx.run / STEP)
    ctx.ok(train(ctx))
    ctx.done(top1)


# --- 6. OS errors at --out --------------------------------------------------------------------------

OUT_FAULTS: list[tuple[str, Callable[[Ctx], Path], str]] = [
    ("is-file", lambda c: c.w("f", "x"), "/f"),
    ("under-file", lambda c: c.w("f", "x") / "sub", "/f"),
    ("readonly", lambda c: readonly(c.root / "ro"), "/ro"),
    ("readonly-parent", lambda c: readonly(c.root / "ro") / "sub", "/ro"),
    ("sys", lambda c: Path("/sys/modernize-hostile"), "/sys/modernize-hostile"),
    ("proc", lambda c: Path("/proc/modernize-hostile/x"), "/proc/modernize-hostile"),
    ("name-too-long", lambda c: c.root / ("n" * 300), "nnnnnnnnnn"),
    ("path-too-long", lambda c: c.root.joinpath(*["d" * 200] * 25), "dddddddddd"),
    ("symlink-loop", lambda c: (os.symlink("loop", c.root / "loop"), c.root / "loop")[1], "loop"),
]
WORK = {"flops": "*:flops_table", "bench": "*:bench_roadmap", "report": "*:roadmap_figure"}


def _out_case(cmd: str, make: Callable[[Ctx], Path], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        bad = make(ctx)
        hooks = [("forbid", WORK[cmd], "the work started before --out was checked")] if cmd in WORK else []
        if cmd == "train":
            ctx.refused(train(ctx, out=bad), culprit, keep=[ctx.root])
            ctx.ok(train(ctx))
            ctx.done(ctx.shard.template()[1])
            return
        if cmd == "report":
            ctx.trained()
            argv, good = report(ctx, None, "--out", str(bad)), report(ctx, None, "--out", str(ctx.root / "rep"))
        elif cmd == "flops":
            argv, good = flops(ctx)[:-1] + [str(bad)], flops(ctx)
        else:
            argv, good = bench(ctx)[:-1] + [str(bad)], bench(ctx)
        ctx.refused(argv, culprit, hooks=hooks, keep=[ctx.root])
        ctx.ok(good)
    return fn


for _cmd in ("flops", "bench", "report", "train"):
    for _id, _make, _cul in OUT_FAULTS:
        case(f"{_cmd}-out-{_id}")(_out_case(_cmd, _make, _cul))


@case("report-out-is-run-json")
def _out_runjson(ctx: Ctx) -> None:
    ctx.trained()
    ctx.refused(report(ctx, None, "--out", str(ctx.run / "run.json")), "run.json")




@case("report-run-json-empty-object")
def _run_json_empty(ctx: Ctx) -> None:
    """CONTRIBUTING.md's example of a case."""
    ctx.trained()
    (ctx.run / "run.json").write_text("{}")
    ctx.refused(report(ctx), "run.json")
    (ctx.run / "run.json").unlink()
    ctx.ok(train(ctx))
    ctx.done(ctx.shard.template()[1])
