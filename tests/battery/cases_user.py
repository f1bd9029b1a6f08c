"""Battery cases: a user's own files beside a roadmap (``imports``, step recipes) and what
``train --plan``, ``describe`` and ``report`` check (issue 28's smaller classes)."""

from __future__ import annotations

from .harness import MINI, STEP, Ctx, _tiny_lines, case, flops, refuse_on_trained, small_roadmap, train

KINDS = ("from torch import nn\nfrom modernize.kinds import register_act\n\n"
         "@register_act('{name}', label='{name}')\ndef factory() -> nn.Module:\n    return nn.SiLU()\n")


def _mini(ctx: Ctx, folder: str, imports: str, kind: str | None = None) -> str:
    """MINI in ``folder`` with ``imports``, and a second step using ``kind`` when given."""
    text = f"imports = {imports}\n" + MINI
    if kind:
        text += f'\n[[steps]]\nname = "act"\napply = {{transform = "act", kind = "{kind}"}}\n'
    return str(ctx.w(f"{folder}/mini.toml", text))


def _fixed_flops(ctx: Ctx) -> None:
    ctx.ok(flops(ctx))


@case("imports-stdlib-name-json")
def _imports_json(ctx: Ctx) -> None:
    ctx.w("study/json.py", KINDS.format(name="json_kind"))
    ctx.refused(flops(ctx, roadmap=_mini(ctx, "study", '["json"]', "json_kind")), "standard library",
                keep=[ctx.root / "flops_out"])
    _fixed_flops(ctx)


@case("imports-installed-name-torch")
def _imports_torch(ctx: Ctx) -> None:
    ctx.w("study/torch.py", "")
    ctx.refused(flops(ctx, roadmap=_mini(ctx, "study", '["torch"]')), "torch", keep=[ctx.root / "flops_out"])


@case("imports-sys-exit-zero")
def _imports_exit(ctx: Ctx) -> None:
    ctx.w("study/exits.py", "import sys\nsys.exit(0)\n")
    ctx.refused(flops(ctx, roadmap=_mini(ctx, "study", '["exits"]')), "exits", keep=[ctx.root / "flops_out"])


@case("imports-user-transform-sys-exit")
def _transform_exit(ctx: Ctx) -> None:
    ctx.w("study/tf.py", "import sys\nfrom modernize import register_transform\n\n"
                         "@register_transform('bye', label='bye')\ndef bye(spec):\n    sys.exit(0)\n")
    rm = ctx.w("study/rm.toml", 'name = "m"\nimports = ["tf"]\n[[steps]]\nname = "s"\napply = "bye"\n')
    ctx.refused(["describe", str(rm), "--no-counts"], ["bye", "sys.exit"])


@case("imports-shared-folder-relative-path")
def _imports_shared(ctx: Ctx) -> None:
    ctx.w("lab/shared_kinds.py", KINDS.format(name="shared_kind"))
    for entry in ('["../lab/shared_kinds"]', '["../lab/shared_kinds.py"]'):
        ctx.ok(["describe", _mini(ctx, "study", entry, "shared_kind"), "--no-counts", "--step", "act"])


@case("imports-same-name-two-folders")
def _imports_two(ctx: Ctx) -> None:
    """The current folder holds another ``kinds.py``: the roadmap's own is the one imported."""
    ctx.w("kinds.py", KINDS.format(name="wrong_kind"))
    ctx.w("study/kinds.py", KINDS.format(name="right_kind"))
    res = ctx.ok(["describe", _mini(ctx, "study", '["kinds"]', "right_kind"), "--no-counts", "--step", "act"])
    if "right_kind" not in res.out:
        ctx.fail("wrong", f"the roadmap's kinds.py was not the one imported: {res.out[:200]!r}")


@case("imports-missing-beside-roadmap")
def _imports_missing(ctx: Ctx) -> None:
    ctx.w("here_kinds.py", KINDS.format(name="here_kind"))  # beside the current folder, not the roadmap
    ctx.refused(["describe", _mini(ctx, "study", '["here_kinds"]', "here_kind"), "--no-counts"], "here_kinds")


@case("describe-several-steps")
def _describe_several(ctx: Ctx) -> None:
    res = ctx.ok(["describe", "--no-counts", "--step", "kernel_7", STEP])
    if [ln.split()[2] for ln in res.out.splitlines() if ln.startswith("== ")] != ["kernel_7", STEP]:
        ctx.fail("wrong", f"describe --step kernel_7 {STEP}: {res.out[:200]!r}")


@case("plan-step-recipe-beside-the-roadmap")
def _plan_step_recipe(ctx: Ctx) -> None:
    """A step's ``recipe = "mine.toml"`` is read beside the roadmap file, not in the current folder."""
    ctx.w("study/mine.toml", _tiny_lines())
    rm = small_roadmap(ctx, lambda t: t.replace(f'paper_row = "{STEP}"', f'paper_row = "{STEP}"\nrecipe = "mine.toml"'),
                       "study/rm.toml")
    res = ctx.ok(train(ctx, "--plan", roadmap=rm), allowed=[])
    if "[mine]" not in res.out:
        ctx.fail("wrong", f"the plan does not train {STEP} with mine.toml: {res.out[-300:]!r}")


@case("plan-out-is-file")
def _plan_out_file(ctx: Ctx) -> None:
    ctx.refused(train(ctx, "--plan", out=ctx.w("f", "x")), "/f", keep=[ctx.root])


@case("plan-fingerprint-conflict")
def _plan_conflict(ctx: Ctx) -> None:
    refuse_on_trained(ctx, lambda c: train(c, "--plan", recipe=c.w("other.toml", _tiny_lines(lr="0.001"))), "seed0")


@case("plan-slurm-with-workers")
def _plan_slurm(ctx: Ctx) -> None:
    ctx.refused(train(ctx, "--plan", "--launcher", "slurm", "--workers", "2"), "--workers", keep=[ctx.root])


@case("plan-accumulation-budget-line")
def _plan_accum(ctx: Ctx) -> None:
    res = ctx.ok(train(ctx, "--plan", "--accum-steps", "2"), allowed=[])
    budget = next((ln for ln in res.out.splitlines() if ln.startswith("budget: recipe")), "")
    if "global batch 32, lr 0.004 " not in budget:
        ctx.fail("wrong", f"--accum-steps 2 on batch 16, lr 0.002 per 16: the budget line says {budget!r}")


@case("report-step-invalid-under-proxy-left-out")
def _report_invalid(ctx: Ctx) -> None:
    rm = ctx.w("pv.toml", 'name = "pv"\nbase = "resnet50"\n[[steps]]\nname = "r50"\n[[steps]]\nname = "gn"\n'
                          'apply = {transform = "norm", kind = "group", args = {groups = 32}}\n')
    ctx.ok(train(ctx, roadmap=rm, steps=("r50",)))
    res = ctx.ok(["report", str(ctx.run)])
    row = next((ln for ln in res.out.splitlines() if ln.strip().startswith("gn ")), "")
    if "missing" not in row or not (ctx.run / "report" / "index.html").is_file():
        ctx.fail("wrong", f"the step never trained is not shown missing, or no page: {row!r}")
    ctx.refused(train(ctx, roadmap=rm, steps=("r50", "gn")), ["'gn'", "proxy"])
