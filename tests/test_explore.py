"""explore: the search logic against a planted design space (a deterministic scorer: known
best path, preconditions, knob alternatives, ties, rules, budgets), then end to end on
synthetic data through train's job queue (reuse, resume after SIGKILL, two processes)."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from modernize.cli import main as cli_main
from modernize.errors import ConfigError
from modernize.explore import (
    Alternative,
    Budget,
    Knob,
    Rule,
    Scores,
    Setup,
    explore,
    from_roadmap,
    load_candidates,
    run_explore,
    worst_case_jobs,
)
from modernize.explore.execute import QUIET, spec_key
from modernize.explore.plan import plan_explore
from modernize.proxy import ProxyScale
from modernize.request import RunRequest
from modernize.roadmap import load_roadmap
from modernize.spec import ArchSpec, base_spec
from tests.conftest import write_recipe

REPO = Path(__file__).resolve().parent.parent
SEEDS = (0, 1)
NOISE = (0.1, -0.1)


def alt(name: str, transform: str, **params: object) -> Alternative:
    return Alternative(name, ((transform, dict(params)),), name)


KNOBS = (
    Knob("gelu", (alt("gelu", "gelu"),)),
    Knob("depthwise", (alt("depthwise", "depthwise"),)),
    Knob("inverted_bottleneck", (alt("inverted_bottleneck", "inverted_bottleneck"),)),
    Knob("move_up_dwconv", (alt("move_up_dwconv", "move_up_dwconv"),)),
    Knob("kernel", tuple(alt(f"kernel_{k}", "kernel_size", kernel_size=k) for k in (5, 7, 9))),
    Knob("bn_to_ln", (alt("bn_to_ln", "bn_to_ln"),)),
)


def planted(spec: ArchSpec) -> float:
    """The planted landscape: kernel 7 best, GELU +1, inverted +0.5, depthwise -1, LN -0.5; moving
    the depthwise conv up would be +4 but needs depthwise (-1) first: greedy never reaches it."""
    return (70 + (1.0 if spec.act == "gelu" else 0) + {3: 0, 5: 1.5, 7: 2.0, 9: 0.5}[spec.kernel_size]
            - (1.0 if spec.groups == "depthwise" else 0) + (0.5 if spec.block == "inverted" else 0)
            + (4.0 if spec.spatial_pos == "top" else 0) - (0.5 if spec.norm == "layer" else 0))


class Scorer:
    """Deterministic scores; records every key it was asked for, per round."""

    def __init__(self, value=planted, gmacs=lambda s: 1.0 + 0.1 * s.kernel_size) -> None:
        self.value, self.gmacs, self.asked = value, gmacs, []

    def __call__(self, specs: Mapping[str, ArchSpec]) -> dict[str, Scores]:
        self.asked.append(list(specs))
        return {k: Scores(tuple(self.value(s) + n for n in NOISE), self.gmacs(s), 1.0) for k, s in specs.items()}


def run(rule: Rule | None = None, budget: Budget | None = None, knobs=KNOBS, scorer=None, measure=None):
    scorer = scorer or Scorer()
    return explore(base_spec("resnet50"), knobs, rule=rule or Rule(), seeds=SEEDS, score=scorer, key=spec_key,
                   budget=budget or Budget(), measure=measure), scorer


def path(search) -> list[str]:
    return [t.alternative for t in search.path]


def test_paper_rule_finds_the_planted_greedy_path() -> None:
    s, scorer = run()
    assert path(s) == ["kernel_7", "gelu", "inverted_bottleneck"]
    assert s.stop.startswith("round 4: nothing adopted")
    r1 = {t.alternative: t for t in s.rounds[0].trials}
    assert r1["move_up_dwconv"].decision == "excluded" and "needs 'depthwise' first" in r1["move_up_dwconv"].why
    assert math.isclose(r1["kernel_7"].diff, 2.0) and r1["kernel_7"].significant
    assert r1["kernel_5"].decision == "rejected" and "below the adopted kernel_7" in r1["kernel_5"].why
    # a decided knob leaves the search: no kernel alternative after round 1
    assert all(t.knob != "kernel" for rnd in s.rounds[1:] for t in rnd.trials)
    # the inverted bottleneck's +0.5 is inside the noise: adopted by the paper rule, not significant
    assert not s.path[2].significant and "not significant" in s.path[2].why
    # the current spec is asked for again (reused by content), never as a new job
    assert s.rounds[1].current == s.path[0].key and s.jobs == len({k for ks in scorer.asked for k in ks}) * 2


def test_strict_rule_stops_at_the_first_gain_inside_the_noise() -> None:
    s, _ = run(Rule("strict"))
    assert path(s) == ["kernel_7", "gelu"]
    last = {t.alternative: t for t in s.rounds[-1].trials}
    assert last["inverted_bottleneck"].decision == "rejected" and "lower 95 % bound" in last["inverted_bottleneck"].why


def test_flops_rule_excludes_over_budget_candidates_before_training() -> None:
    scorer = Scorer()
    s, _ = run(Rule("flops", max_gmacs=1.55), scorer=scorer, measure=scorer.gmacs)
    assert path(s) == ["kernel_5", "gelu", "inverted_bottleneck"]
    r1 = {t.alternative: t for t in s.rounds[0].trials}
    assert r1["kernel_7"].decision == "excluded" and "over the GMACs budget" in r1["kernel_7"].why
    assert r1["kernel_7"].key not in scorer.asked[0]  # not trained


def test_ties_go_to_fewer_gmacs_then_to_the_list_order() -> None:
    flat = lambda s: 70 + (1.0 if s.act == "gelu" else 0) + (1.0 if s.norm == "layer" else 0)  # noqa: E731
    knobs = (Knob("bn_to_ln", (alt("bn_to_ln", "bn_to_ln"),)), Knob("gelu", (alt("gelu", "gelu"),)))
    s, _ = run(knobs=knobs, scorer=Scorer(flat, gmacs=lambda s: 1.0))
    assert path(s)[0] == "bn_to_ln" and "tied with gelu" in s.path[0].why  # same GMACs: first in the list
    s, _ = run(knobs=knobs, scorer=Scorer(flat, gmacs=lambda s: 0.5 if s.act == "gelu" else 1.0))
    assert path(s)[0] == "gelu"  # fewer GMACs wins the tie


def test_budgets_stop_before_a_round_that_does_not_fit() -> None:
    s, _ = run(budget=Budget(max_rounds=1))
    assert path(s) == ["kernel_7"] and s.stop.startswith("round budget")
    # round 1: the start and 7 candidates x 2 seeds = 16 jobs; round 2 needs 4 x 2 more
    s, scorer = run(budget=Budget(max_jobs=20))
    assert len(s.rounds) == 1 and s.stop.startswith("job budget: round 2 needs 8") and s.jobs == 16
    assert len(scorer.asked) == 1
    assert worst_case_jobs(KNOBS, 2, Budget()) == (6, 2 + 2 * (8 + 7 + 6 + 5 + 4 + 3))


def test_a_failed_candidate_is_not_adopted() -> None:
    class Failing(Scorer):
        def __call__(self, specs):
            out = super().__call__(specs)
            return {k: (Scores((None, None), v.gmacs, 1.0, "seed 0: failed (nan loss)")
                        if specs[k].kernel_size == 7 else v) for k, v in out.items()}

    s, _ = run(scorer=Failing(), budget=Budget(max_rounds=1))
    r1 = {t.alternative: t for t in s.rounds[0].trials}
    assert r1["kernel_7"].decision == "rejected" and "failed" in r1["kernel_7"].why and path(s) == ["kernel_5"]


def test_rules_refuse_bad_settings() -> None:
    with pytest.raises(ConfigError, match="valid rules"):
        Rule("best")
    with pytest.raises(ConfigError, match="--max-gmacs"):
        Rule("flops")


def test_default_candidates_are_the_roadmap_steps_after_the_start_with_kernel_as_one_knob() -> None:
    rm = load_roadmap(None)
    cands = from_roadmap(rm, rm["recipe"])
    names = [k.name for k in cands.knobs]
    assert "resnet50" not in names and "recipe" not in names
    kernel = next(k for k in cands.knobs if k.name == "kernel_size")
    assert [a.name for a in kernel.alternatives] == ["kernel_5", "kernel_7", "kernel_9", "kernel_11"]
    later = from_roadmap(rm, rm["gelu"])  # from a later step: its ancestors are no candidates
    assert "depthwise" not in [k.name for k in later.knobs] and "bn_to_ln" in [k.name for k in later.knobs]


USER_MODULE = textwrap.dedent('''
    from modernize.transforms import register_transform

    @register_transform("explore_test_silu", label="SiLU (user)")
    def explore_test_silu(spec):
        return spec.replace(act="silu")
''')


def test_candidates_file_with_user_transform_and_knob(tmp_path: Path) -> None:
    (tmp_path / "explore_user_mod.py").write_text(USER_MODULE)
    f = tmp_path / "cands.toml"
    f.write_text(textwrap.dedent('''
        imports = ["explore_user_mod"]
        [[candidates]]
        name = "silu"
        apply = "explore_test_silu"
        [[candidates]]
        name = "kernel"
        alternatives = [{ name = "k5", apply = { transform = "kernel_size", kernel_size = 5 } },
                        { name = "k7", apply = [{ transform = "kernel_size", kernel_size = 7 }, "gelu"] }]
    '''))
    cands = load_candidates(f)
    assert [k.name for k in cands.knobs] == ["silu", "kernel"] and cands.imports[0][0] == "explore_user_mod"
    assert cands.knobs[1].alternatives[1].calls == (("kernel_size", {"kernel_size": 7}), ("gelu", {}))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[candidates]]\nname = "x"\napply = "no_such_transform"\n')
    with pytest.raises(ConfigError, match="bad.toml: candidate 'x': unknown transform"):
        load_candidates(bad)


# --- end to end: synthetic data, a tiny recipe ----------------------------------------------

CANDS = textwrap.dedent("""
    [[candidates]]
    name = "gelu"
    apply = "gelu"
    [[candidates]]
    name = "kernel"
    alternatives = [{ name = "kernel_5", apply = { transform = "kernel_size", kernel_size = 5 } }]
    [[candidates]]
    name = "move_up"
    apply = "move_up_dwconv"
""")
PROXY = ["--width", "0.125", "--depth", "0.34", "--low-res", "2"]


def files(tmp: Path) -> tuple[Path, Path]:
    (tmp / "cands.toml").write_text(CANDS)
    return write_recipe(tmp), tmp / "cands.toml"


def explore_args(tmp: Path, out: str = "out", store: str = "store", *extra: str) -> list[str]:
    recipe, cands = files(tmp)
    return ["explore", "--data", "synthetic:32", "--recipe", str(recipe), "--candidates", str(cands), *PROXY,
            "--out", str(tmp / out), "--store", str(tmp / store), "--device", "cpu", "--threads", "1",
            "--rule", "paper", *extra]


def setup(tmp: Path, store: str = "store") -> Setup:
    recipe, cands = files(tmp)
    rm = load_roadmap(None)
    request = RunRequest(out=tmp / store, data="synthetic:32", recipe=str(recipe), seeds=SEEDS,
                         proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2))
    return Setup(roadmap=rm, start=rm["recipe"], candidates=load_candidates(cands), request=request,
                 execution=dataclasses.replace(QUIET, device="cpu", threads=1))


def test_explore_end_to_end_rerun_trains_nothing_and_its_roadmap_is_accepted(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_explore(setup(tmp_path), Rule(), Budget(max_rounds=2), tmp_path / "out", say=lambda _: None)
    assert first.trained == first.search.jobs > 0 and first.reused == 0
    table = (tmp_path / "out" / "explore.csv").read_text()
    again = run_explore(setup(tmp_path), Rule(), Budget(max_rounds=2), tmp_path / "out2", say=lambda _: None)
    assert again.trained == 0 and again.reused == first.search.jobs
    assert (tmp_path / "out2" / "explore.csv").read_text() == table
    rows = list(csv.DictReader(table.splitlines()))
    assert rows[0]["decision"] == "start" and any(r["decision"] == "excluded" for r in rows)
    for name in ("explore.md", "explore.png", "index.html", "roadmap.toml"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    rm = load_roadmap(tmp_path / "out" / "roadmap.toml")
    trained = [r for r in rows if r["decision"] in ("adopted", "rejected")]
    assert len(rm.steps) == 1 + len(trained)  # the start, then every trained candidate
    assert cli_main(["flops", str(tmp_path / "out" / "roadmap.toml"), "--resolution", "32",
                     "--out", str(tmp_path / "fl")]) == 0
    assert cli_main(["describe", str(tmp_path / "out" / "roadmap.toml"), "--no-counts"]) == 0
    # A plan over a store that holds round 1 already still estimates the rounds to come from the
    # timing of round 1's specs (each timed job is made to take 90 s here).
    import modernize.explore.plan as explore_plan

    timed = explore_plan.plan_steps
    monkeypatch.setattr(explore_plan, "plan_steps", lambda *a, **k: [
        dataclasses.replace(p, secs=90.0) for p in timed(*a, **k)])
    plan = plan_explore(setup(tmp_path), Rule(), Budget(max_rounds=4))
    assert " 0 already" not in plan[1], plan[1]
    assert "mean of 1.5 min per job" in plan[-1], plan[-1]


@pytest.mark.slow
def test_written_roadmap_trains_reports_and_compares(tmp_path: Path) -> None:
    run_explore(setup(tmp_path), Rule(), Budget(max_rounds=1), tmp_path / "out", say=lambda _: None)
    rm, recipe = str(tmp_path / "out" / "roadmap.toml"), str(tmp_path / "tiny.toml")
    for run in ("a", "b"):
        assert cli_main(["train", rm, "--data", "synthetic:32", "--recipe", recipe, *PROXY, "--seeds", "0", "1",
                         "--out", str(tmp_path / run), "--device", "cpu"]) == 0
    assert cli_main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "rep")]) == 0
    assert cli_main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0


def cli(args: list[str], kill_after: int = 0) -> subprocess.Popen[str]:
    """``explore`` in a process; with ``kill_after`` it SIGKILLs itself at that AdamW step."""
    code = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(REPO)!r})
        if {kill_after}:
            real, calls = torch.optim.AdamW.step, [0]
            def step(self, *a, **k):
                calls[0] += 1
                if calls[0] == {kill_after}:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(self, *a, **k)
            torch.optim.AdamW.step = step
        from modernize.cli import main
        if __name__ == "__main__":
            sys.exit(main(sys.argv[1:]))
    """)
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


TRAINED = re.compile(r"(s-[0-9a-f]+) seed (\d+): done, top1")


@pytest.mark.slow
def test_resume_after_sigkill_mid_round_equals_an_uninterrupted_explore(tmp_path: Path) -> None:
    p = cli(explore_args(tmp_path, "whole", "store_a"))
    assert p.wait(600) == 0, p.stdout.read() if p.stdout else ""
    killed = cli(explore_args(tmp_path, "killed", "store_b"), kill_after=7)  # inside the 4th job of round 1
    assert killed.wait(600) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "explore.csv").exists()
    resumed = cli(explore_args(tmp_path, "killed", "store_b"))
    out = resumed.stdout.read() if resumed.stdout else ""
    assert resumed.wait(600) == 0, out
    assert "already, skipped" in out
    assert (tmp_path / "killed" / "explore.csv").read_text() == (tmp_path / "whole" / "explore.csv").read_text()


@pytest.mark.slow
def test_two_processes_on_one_explore_train_each_job_once(tmp_path: Path) -> None:
    procs = [cli(explore_args(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [m for o in outs for m in TRAINED.findall(o)]
    assert trained and len(trained) == len(set(trained))
    rows = list(csv.DictReader((tmp_path / "out" / "explore.csv").open()))
    used = {r["key"] for r in rows if r["key"] and r["decision"] != "excluded"}
    assert {k for k, _ in trained} == used
