"""Battery cases: bad flags and values of every command, recipes with wrong types or broken files,
malformed roadmaps (sections 1-3)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from .harness import (
    RANDOM,
    STEP,
    C,
    Ctx,
    R,
    _tiny_lines,
    apply_edit,
    bad_recipe,
    bench,
    bench_data,
    case,
    first_step,
    flops,
    image_folder,
    refuse_on_trained,
    roadmap,
    small_roadmap,
    train,
)

# --- 1. flags and values ------------------------------------------------------------------------------

def _flops_flag(args: list[str], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(flops(ctx, *args), culprit, keep=[ctx.root / "flops_out"])
        ctx.ok(flops(ctx))
    return fn


for _id, _args, _cul in [
    ("nan", ["--resolution", "nan"], "--resolution"), ("inf", ["--resolution", "inf"], "--resolution"),
    ("negative", ["--resolution", "-64"], "--resolution"), ("huge", ["--resolution", "100000000"], "--resolution"),
    ("float", ["--resolution", "224.5"], "--resolution"), ("empty", ["--resolution", ""], "--resolution"),
    ("hex", ["--resolution", "0x40"], "--resolution"),
]:
    case(f"flops-resolution-{_id}")(_flops_flag(_args, _cul))
case("flops-unknown-flag")(_flops_flag(["--frobnicate"], "--frobnicate"))


def _describe_flag(args: list[str], culprit: str) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(["describe", *args], culprit)
    return fn


case("describe-resolution-nan")(_describe_flag(["--step", STEP, "--resolution", "nan"], "--resolution"))
case("describe-resolution-huge")(_describe_flag(["--step", STEP, "--resolution", "100000000"], "--resolution"))
case("describe-step-empty")(_describe_flag(["--no-counts", "--step", ""], "step"))
case("describe-roadmap-missing")(_describe_flag(["nope.toml", "--no-counts"], "nope.toml"))


def _bench_flag(args: list[str], culprit: str | Sequence[str]) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(bench(ctx, *args), culprit, keep=[ctx.root / "bench_out"])
    return fn


for _id, _args, _cul in [
    ("batch-nan", ["--batch", "nan"], "--batch"), ("batch-negative", ["--batch", "-8"], "--batch"),
    ("batch-huge", ["--batch", "1000000000000"], ["--batch", "batch"]), ("repeats-zero", ["--repeats", "0"], "--repeats"),
    ("warmup-word", ["--warmup", "some"], "--warmup"), ("threads-zero", ["--threads", "0"], "--threads"),
    ("steps-empty", ["--steps", ""], "--steps"), ("steps-commas", ["--steps", ",,"], "--steps"),
    ("resolution-inf", ["--resolution", "inf"], "--resolution"), ("device-cuda", ["--device", "cuda"], "cuda"),
    ("parity-no-twin", ["--parity"], "r50"), ("batch-one-batchnorm", ["--batch", "1"], "--batch"), ("threads-huge", ["--threads", "100000"], "--threads"),
]:
    case(f"bench-{_id}")(_bench_flag(_args, _cul))


@case("bench-then-fixed")
def _bench_fixed(ctx: Ctx) -> None:
    ctx.refused(bench(ctx, "--batch", "nan"), "--batch", keep=[ctx.root / "bench_out"])
    ctx.ok(bench(ctx))
    if not (ctx.root / "bench_out" / "bench.csv").is_file():
        ctx.fail("wrong", "bench exited 0 without bench_out/bench.csv")


def _bd_flag(args: list[str], culprit: str | Sequence[str], fix: bool = False) -> Callable[[Ctx], None]:
    def fn(ctx: Ctx) -> None:
        ctx.refused(bench_data(ctx, *[a(ctx) if callable(a) else a for a in args]), culprit)
        if fix:
            ctx.ok(bench_data(ctx))
        left = [p for p in (ctx.root / ".tmp").glob("*")]
        if left:
            ctx.fail("outside", f"bench-data left temp files behind: {left[:3]}")
    return fn


def _bd_images(kind: str) -> Callable[[Ctx], str]:
    def make(ctx: Ctx) -> str:
        root = image_folder(ctx, n_train=8, n_val=4)
        if kind == "text-png":
            for p in root.rglob("*.png"):
                p.write_text("this is not an image\n")
        elif kind == "empty-train":
            shutil.rmtree(root / "train")
            (root / "train").mkdir()
        return f"imagefolder:{root}"
    return make


for _id, _args, _cul, _fix in [
    ("images-zero", ["--images", "0"], "--images", False), ("images-huge", ["--images", "10000000000"], "--images", False),
    ("threads-huge", ["--threads", "100000"], "--threads", False), ("measure-nan", ["--measure", "nan"], "--measure", False),
    ("train-img-s-nan", ["--train-img-s", "nan"], "--train-img-s", False),
    ("train-img-s-negative", ["--train-img-s", "-5"], "--train-img-s", False),
    ("recipe-missing", ["--recipe", "nope"], "nope", False), ("data-synthetic", ["--data", "synthetic:32"], "synthetic", False),
    ("data-missing-folder", ["--data", "imagefolder:/no/such/folder"], "/no/such/folder", False),
    ("data-text-png", ["--data", _bd_images("text-png")], ".png", False),
    ("data-empty-train", ["--data", _bd_images("empty-train")], "train", False),
    ("resolution-zero", ["--resolution", "0"], "--resolution", False),
    ("batch-recipe-missing", ["--batch-recipe", "nope"], "nope", True),
]:
    case(f"bench-data-{_id}")(_bd_flag(_args, _cul, _fix))


def _train_flag(args: list[str], culprit: str | Sequence[str], data: str = "synthetic:32") -> Callable[[Ctx], None]:
    return lambda ctx: refuse_on_trained(ctx, lambda c: train(c, *args, data=data), culprit)


for _id, _args, _cul in [
    ("seeds-nan", ["--seeds", "nan"], "--seeds"), ("seeds-huge", ["--seeds", str(10 ** 30)], "seed"),
    ("seeds-word", ["--seeds", "zero"], "--seeds"), ("width-nan", ["--width", "nan"], "width"),
    ("width-inf", ["--width", "inf"], "width"), ("width-zero", ["--width", "0"], "width"),
    ("width-huge", ["--width", "1e9"], "width"), ("depth-negative", ["--depth", "-1"], "depth"),
    ("layer-scale-nan", ["--layer-scale", "nan"], "layer-scale"), ("layer-scale-two", ["--layer-scale", "2"], "layer-scale"),
    ("low-res-three", ["--low-res", "3"], "--low-res"), ("ckpt-every-negative", ["--ckpt-every", "-1"], "--ckpt-every"),
    ("threads-negative", ["--threads", "-1"], "--threads"), ("workers-nan", ["--workers", "nan"], "--workers"),
    ("threads-huge", ["--threads", "100000"], "--threads"), ("workers-huge", ["--workers", "100000"], "--workers"),
    ("claim-timeout-inf", ["--claim-timeout", "inf"], "--claim-timeout"),
    ("device-cuda-word", ["--device", "cuda:abc"], "cuda:abc"), ("device-cuda", ["--device", "cuda"], "cuda"),
    ("steps-empty", ["--steps", ""], "--steps"), ("steps-huge-name", ["--steps", "x" * 100_000], "--steps"),
]:
    case(f"train-flag-{_id}")(_train_flag(_args, _cul))
for _id, _data, _cul in [("synthetic-five", "synthetic:5", "synthetic:5"), ("synthetic-word", "synthetic:abc", "synthetic:abc"),
                         ("synthetic-huge", "synthetic:1000000000000", "synthetic:1000000000000"),
                         ("empty", "", "--data"), ("cifar-missing", "cifar10:/no/such", "/no/such")]:
    case(f"train-data-{_id}")(_train_flag([], _cul, data=_data))


@case("train-recipe-is-directory")
def _recipe_dir(ctx: Ctx) -> None:
    (ctx.root / "recipes.toml").mkdir()
    refuse_on_trained(ctx, lambda c: train(c, recipe=c.root / "recipes.toml"), "recipes.toml")


# --- 2. recipes: wrong types in every field, unknown keys, broken files ---------------------------------

RECIPE_FAULTS = [  # (key, TOML value, culprit)
    ("epochs", '"1"', "epochs"), ("epochs", "1.5", "epochs"), ("epochs", "0", "epochs"), ("epochs", "true", "epochs"),
    ("batch_size", "-1", "batch_size"), ("batch_size", "1000000000", "batch"), ("lr", "-1e-3", "'lr'"),
    ("lr", "inf", "'lr'"), ("lr", "[0.1]", "'lr'"), ("lr_batch", "0", "lr_batch"), ("resolution", "0", "resolution"),
    ("resolution", "100000000", "resolution"), ("optimizer", '"lion"', "optimizer"), ("schedule", '"poly"', "schedule"),
    ("crop", '"center"', "crop"), ("betas", "[0.9]", "betas"), ("betas", '"0.9,0.99"', "betas"),
    ("decay_epochs", '"x"', "decay_epochs"), ("decay_epochs", "[inf]", "decay_epochs"), ("precision", '"fp8"', "precision"),
    ("proxy", '"huge"', "proxy"), ("train_images", "-1", "train_images"), ("val_images", '"all"', "val_images"),
    ("bad_images", '"ignore"', "bad_images"), ("hflip", '"yes"', "hflip"), ("ema_decay", "1.0", "ema_decay"),
    ("label_smoothing", "1.0", "label_smoothing"), ("drop_path", "nan", "drop_path"),
    ("randaugment_magnitude", "31", "randaugment_magnitude"), ("resize", "-1", "resize"), ("mixup", "true", "mixup"),
    ("warmup_epochs", "5", "warmup_epochs"), ("name", "5", "name"), ("description", "[1]", "description"),
    ("grad_clip", "-inf", "grad_clip"), ("channels_last", "1", "channels_last"), ("lr_warmup", "1", "lr_warmup"),
    ("momentum", "{ a = 1 }", "momentum"), ("lr", "2020-01-02T03:04:05", "'lr'"), ("weight_decay", "false", "weight_decay"),
]
_seen: dict[str, int] = {}
for _key, _val, _cul in RECIPE_FAULTS:
    _seen[_key] = _seen.get(_key, 0) + 1
    _cid = f"recipe-{_key}-{_seen[_key]}"
    case(_cid)((lambda k, v, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, recipe=bad_recipe(cc, **{k: v})), c))(_key, _val, _cul))

RECIPE_FILES = [  # (id, file content, culprit)
    ("toml-syntax", "lr = = 1\n", "bad.toml"), ("random-bytes", RANDOM, "bad.toml"),
    ("deep-nesting", "lr = " + "[" * 3000 + "]" * 3000 + "\n", "bad.toml"),
    ("substitute-not-table", _tiny_lines() + "substitute = 5\n", "substitute"),
    ("substitute-entry-int", _tiny_lines() + "[substitute]\nresnet_original = 5\n", "substitute"),
    ("substitute-unknown-key", _tiny_lines() + "[substitute.resnet_original]\nfoo = 1\n", "foo"),
    ("substitute-nan", _tiny_lines() + "[substitute.resnet_original]\nlr = nan\nepochs = 1\n", "lr"),
    # found by tests/test_types.py (every key, every type): refused at load, never coerced
    ("substitute-datetime", _tiny_lines() + "[substitute.resnet_original]\nepochs = 2020-01-02\n", "epochs"),
    ("substitute-bool-for-float", _tiny_lines() + "[substitute.resnet_original]\nlr = true\n", "lr"),
    ("utf16", _tiny_lines().encode("utf-16"), "bad.toml"),
]
DEFAULT_RM = "resnet50_to_convnext_t"  # has a step with a recipe override (resnet50): substitutes apply
for _id, _content, _cul in RECIPE_FILES:
    case(f"recipe-file-{_id}")((lambda content, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, recipe=cc.w("bad.toml", content), roadmap=DEFAULT_RM), c))(_content, _cul))


@case("recipe-file-fifo")
def _recipe_fifo(ctx: Ctx) -> None:
    os.mkfifo(ctx.root / "fifo.toml")
    refuse_on_trained(ctx, lambda c: train(c, recipe=c.root / "fifo.toml"), "fifo.toml")


@case("recipe-unicode-name-accepted")
def _recipe_unicode(ctx: Ctx) -> None:
    path = ctx.w("réc✓ipe.toml", _tiny_lines(name='"レシピ ✓"') + C().TINY_SUBSTITUTE)
    ctx.ok(train(ctx, recipe=path))
    ctx.done(ctx.shard.template()[1])


@case("recipe-lr-huge-fails-the-job")
def _recipe_lr_huge(ctx: Ctx) -> None:
    """lr = 1e30: the loss goes non-finite; the job is recorded as failed, the report says so."""
    res = ctx.ok(train(ctx, recipe=bad_recipe(ctx, lr="1e30")))
    r = ctx.result()
    if r.get("status") != "failed" or "non-finite" not in str(r.get("reason")):
        ctx.fail("wrong", f"lr = 1e30: result {r.get('status')!r} ({r.get('reason')!r}), expected failed (non-finite loss)")
    if "failed" not in res.out:
        ctx.fail("wrong", "the report printed after training does not show the failed job")


# --- 3. roadmaps: malformed, edited, unsafe step names -------------------------------------------------

ROADMAP_FAULTS: list[tuple[str, Callable[[Ctx], Path], str | Sequence[str]]] = [
    ("empty-file", lambda c: c.w("bad.toml", ""), "bad.toml"),
    ("random-bytes", lambda c: c.w("bad.toml", RANDOM), "bad.toml"),
    ("directory", lambda c: (c.root / "bad.toml").mkdir() or c.root / "bad.toml", "bad.toml"),
    ("deep-nesting", lambda c: c.w("bad.toml", "name = " + "[" * 3000 + "]" * 3000 + "\n"), "bad.toml"),
    ("unknown-top-key", lambda c: roadmap(c, lambda t: "colour = 1\n" + t), "colour"),
    ("step-unknown-key", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nweight = 3')), "weight"),
    ("step-unicode", lambda c: roadmap(c, first_step('"ステップ"')), "ステップ"),
    ("step-empty", lambda c: roadmap(c, first_step('""')), "name"),
    ("step-dotdot", lambda c: roadmap(c, first_step('"../x"')), "../x"),
    ("step-run-json", lambda c: roadmap(c, first_step('"run.json"')), "run.json"),
    ("step-lock", lambda c: roadmap(c, first_step('"x.lock"')), "x.lock"),
    ("step-int", lambda c: roadmap(c, first_step("5")), "name"),
    ("step-newline", lambda c: roadmap(c, first_step('"a\\nb"')), "step"),
    ("adopted-string", lambda c: roadmap(c, lambda t: t.replace('name = "kernel_5"\npaper_row = "kernel_5"\nfrom = "move_up_dwconv"\nadopted = false', 'name = "kernel_5"\npaper_row = "kernel_5"\nfrom = "move_up_dwconv"\nadopted = "no"')), "adopted"),
    ("from-later-step", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = "gelu"')), "gelu"),
    ("duplicate-step", lambda c: roadmap(c, first_step('"recipe"')), "recipe"),
    ("depths-string", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = "3,3,9,3" }')), "depths"),
    ("depths-float", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3.5, 3, 9, 3] }')), "depths"),
    ("depths-negative", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [-1, 3, 9, 3] }')), "depth"),
    ("depths-huge", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3, 3, 1000000000, 3] }')), "depth"),
    ("width-huge", lambda c: roadmap(c, lambda t: t.replace("width = 96", "width = 1000000000")), "width"),
    ("apply-unknown-param", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = [3, 3, 9, 3], colour = 1 }')), "colour"),
    ("apply-int", lambda c: roadmap(c, apply_edit("apply = 5")), "apply"),
    ("kernel-even", lambda c: roadmap(c, lambda t: t.replace("kernel_size = 7", "kernel_size = 4")), "kernel_size"),
    ("kernel-nan", lambda c: roadmap(c, lambda t: t.replace("kernel_size = 7", "kernel_size = nan")), "kernel_size"),
    ("base-unknown", lambda c: roadmap(c, lambda t: t.replace('base = "resnet50"', 'base = "resnet9000"')), "resnet9000"),
    ("base-table-unknown-field", lambda c: roadmap(c, lambda t: t.replace('base = "resnet50"', 'base = { colour = 1 }')), "colour"),
    ("steps-empty-list", lambda c: c.w("bad.toml", 'name = "x"\nsteps = []\n'), "steps"),
    ("paper-missing", lambda c: roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "nope.csv"')), "nope.csv"),
    ("paper-not-utf8", lambda c: (c.w("p.csv", b"row,x\nresnet50,\xff\xfe\n"), roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "p.csv"')))[1], "p.csv"),
    ("paper-random", lambda c: (c.w("p.csv", RANDOM), roadmap(c, lambda t: t.replace(f'paper = "{R().ABLATIONS_DIR}/paper/paper_roadmap_r50.csv"', 'paper = "p.csv"')))[1], "p.csv"),
    ("paper-row-unknown", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ration"')), "stage_ration"),
    ("change-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nchange = [1]')), "change"),
    # found by tests/test_types.py (every key, every type): a list or table where a string belongs
    ("from-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = ["a"]')), "from"),
    ("from-table", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nfrom = { a = 1 }')), "from"),
    ("paper-row-list", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = ["stage_ratio"]')), "paper_row"),
    ("paper-row-table", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = { a = 1 }')), "paper_row"),
    ("adopted-int", lambda c: roadmap(c, lambda t: t.replace('paper_row = "stage_ratio"', 'paper_row = "stage_ratio"\nadopted = 1')), "adopted"),
    ("description-datetime", lambda c: roadmap(c, lambda t: re.sub(r"(?m)^description = .*$", "description = 2020-01-02T03:04:05", t, count=1)), "description"),
    ("imports-empty-name", lambda c: roadmap(c, lambda t: 'imports = [""]\n' + t), "imports"),
    ("apply-param-date", lambda c: roadmap(c, apply_edit('apply = { transform = "stage_ratio", depths = 2020-01-02 }')), "depths"),
]
for _id, _make, _cul in ROADMAP_FAULTS:
    case(f"roadmap-{_id}")((lambda make, c: lambda ctx: (
        ctx.refused(flops(ctx, roadmap=make(ctx)), c, keep=[ctx.root / "flops_out"]), ctx.ok(flops(ctx))))(_make, _cul))


@case("roadmap-fifo")
def _roadmap_fifo(ctx: Ctx) -> None:
    os.mkfifo(ctx.root / "rm.toml")
    ctx.refused(["describe", str(ctx.root / "rm.toml"), "--no-counts"], "rm.toml")


SMALL_FAULTS = {  # the same faults in the battery's own roadmap, for train on its trained run folder
    "step-dotdot": lambda t: t.replace('name = "kernel_7"', 'name = "../x"'),
    "step-unicode": lambda t: t.replace('name = "kernel_7"', 'name = "ステップ"'),
    "depths-huge": lambda t: t.replace("depths = [3, 3, 9, 3]", "depths = [3, 3, 1000000000, 3]"),
    "kernel-nan": lambda t: t.replace("kernel_size = 7", "kernel_size = nan"),
}
for _id, _make, _cul in [r for r in ROADMAP_FAULTS if r[0] in SMALL_FAULTS]:
    case(f"train-roadmap-{_id}")((lambda edit, c: lambda ctx: refuse_on_trained(
        ctx, lambda cc: train(cc, roadmap=small_roadmap(cc, edit, "bad.toml")), c))(SMALL_FAULTS[_id], _cul))
    case(f"describe-roadmap-{_id}")((lambda make, c: lambda ctx: ctx.refused(["describe", make(ctx)], c))(_make, _cul))
    case(f"bench-roadmap-{_id}")((lambda make, c: lambda ctx: ctx.refused(
        ["bench", make(ctx), *bench(ctx)[2:]], c, keep=[ctx.root / "bench_out"]))(_make, _cul))


@case("train-roadmap-step-recipe-unknown")
def _step_recipe(ctx: Ctx) -> None:
    rm = small_roadmap(ctx, lambda t: t.replace('paper_row = "kernel_7"', 'paper_row = "kernel_7"\nrecipe = "nope_recipe"'),
                       "bad.toml")
    refuse_on_trained(ctx, lambda c: train(c, roadmap=rm), "nope_recipe")


