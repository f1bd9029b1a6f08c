"""The paper checks (modernize/checks/fidelity.py): known inputs -> known verdicts."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from modernize import load_roadmap
from modernize.checks.fidelity import (
    EQUIVALENCE_MARGIN,
    EvalSet,
    assess,
    equivalence_verdict,
    eval_set_of,
    near_chance,
    paper_kinds,
    verdict,
    welch_interval,
)

from .conftest import load_script, recipe_text

R50_ROBUST = {"recipe": 1, "stage_ratio": 1, "depthwise": -1, "widen": 1, "move_up_dwconv": -1, "kernel_7": 1,
              "fewer_activations": 1, "separate_downsampling": 1}
R50_EQUIVALENCE = {"patchify_stem", "inverted_bottleneck", "gelu", "fewer_norms", "bn_to_ln"}


def _table(roadmap_name: str, top1: dict[str, list[float]]) -> pd.DataFrame:
    """A report-shaped table from per-step seed scores and the paper's rows."""
    rm = load_roadmap(roadmap_name)
    rows, by = [], {}
    for s in rm:
        v = top1.get(s.name, [])
        paper = float(s.paper["paper_top1"])
        r = {"step": s.name, "adopted": s.adopted, "parent": s.parent or "", "paper_row": s.paper_row,
             "n": len(v), "top1_mean": statistics.mean(v) if v else math.nan,
             "top1_std": statistics.stdev(v) if len(v) >= 2 else math.nan, "paper_top1": paper}
        p = by.get(s.parent or "")
        r["delta"] = r["top1_mean"] - p["top1_mean"] if p else math.nan
        r["paper_delta"] = paper - p["paper_top1"] if p else math.nan
        rows.append(r)
        by[s.name] = r
    return pd.DataFrame(rows)


def test_robust_steps_are_the_papers_on_both_tables() -> None:
    kinds = paper_kinds(_table("resnet50_to_convnext_t", {}), load_roadmap(None).paper_path)
    assert {k: s for k, (kind, s) in kinds.items() if kind == "robust"} == R50_ROBUST
    assert {k for k, (kind, _) in kinds.items() if kind == "equivalence"} == R50_EQUIVALENCE
    rm200 = load_roadmap("resnet200_to_convnext_b")
    kinds200 = paper_kinds(_table("resnet200_to_convnext_b", {}), rm200.paper_path)
    # Table 11: |delta| >= 0.5 and the same sign in Table 10 (inverted bottleneck: +0.79 and +0.14).
    assert {k for k, (kind, _) in kinds200.items() if kind == "robust"} == {
        "recipe", "depthwise", "widen", "inverted_bottleneck", "move_up_dwconv", "fewer_activations"}
    assert "kernel_5" not in kinds and "resnet50" not in kinds  # branches and the first row are not checked


@pytest.mark.parametrize(("kind", "delta", "se", "sign", "expected"), [
    ("robust", 1.0, 0.4, 1, "agrees"),          # 1.0 > 0.8
    ("robust", 0.7, 0.4, 1, "inconclusive"),    # 0.7 < 0.8
    ("robust", -1.0, 0.4, 1, "disagrees"),
    ("robust", -1.0, 0.4, -1, "agrees"),
    ("robust", 1.0, math.nan, 1, "inconclusive"),  # one seed
    ("equivalence", -0.5, 0.4, 0, "inconclusive"),  # no interval given: nothing shown to be small
])
def test_verdict(kind: str, delta: float, se: float, sign: int, expected: str) -> None:
    assert verdict(kind, delta, se, sign) == expected


@pytest.mark.parametrize(("low", "high", "expected"), [
    (-0.2, 0.3, "passes"),          # inside +-0.5: both one-sided tests reject
    (-0.6, 0.3, "inconclusive"),    # crosses the lower edge
    (-3.0, 3.0, "inconclusive"),    # wider than the margin: too few seeds to say
    (-2.0, -0.6, "fails"),          # wholly below -0.5
    (0.7, 2.0, "fails"),            # wholly above +0.5: the paper saw no change, the run a clear one
    (math.nan, math.nan, "inconclusive"),
])
def test_equivalence_is_tost_on_the_95_interval(low: float, high: float, expected: str) -> None:
    """Before: an equivalence step passed unless significantly negative, so a wide interval passed."""
    assert EQUIVALENCE_MARGIN == 0.5
    assert equivalence_verdict(low, high) == expected
    assert verdict("equivalence", (low + high) / 2, 0.1, 0, low=low, high=high) == expected


def _equivalence_table(spread: float, n: int, shift: float = 0.0, level: float = 90.0) -> pd.DataFrame:
    """Every step at ``level`` + its paper delta (so robust steps move as the paper's), seeds
    spread by ``spread``; gelu (an equivalence step) changes by ``shift``."""
    rm = load_roadmap(None)
    offsets = [spread * (k - (n - 1) / 2) for k in range(n)]
    top1 = {}
    for s in rm:
        base = level + float(s.paper["paper_top1"]) - 80 + (shift if s.name == "gelu" else 0.0)
        top1[s.name] = [base + o for o in offsets]
    return _table("resnet50_to_convnext_t", top1)


def test_narrow_interval_inside_the_margin_passes_and_a_wide_one_is_inconclusive() -> None:
    rm = load_roadmap(None)
    narrow = {c.step: c for c in assess(_equivalence_table(0.05, 5), rm.paper_path, EvalSet(10, 10_000)).checks}
    assert narrow["gelu"].verdict == "passes" and -0.5 < narrow["gelu"].low < narrow["gelu"].high < 0.5
    wide = {c.step: c for c in assess(_equivalence_table(2.0, 2), rm.paper_path, EvalSet(10, 10_000)).checks}
    assert wide["gelu"].verdict == "inconclusive" and wide["gelu"].why == "interval wider than the margin"
    assert wide["gelu"].high - wide["gelu"].low > 2 * EQUIVALENCE_MARGIN
    shifted = {c.step: c for c in assess(_equivalence_table(0.05, 5, shift=-2.0), rm.paper_path).checks}
    assert shifted["gelu"].verdict == "fails"


@pytest.mark.parametrize("evals", [EvalSet(10, 10_000), EvalSet(10, 50), EvalSet(None, 50)])
def test_a_run_near_chance_or_on_a_tiny_set_is_inconclusive(evals: EvalSet) -> None:
    """Before: a chance-level run (50 images) read "equivalence: passes" and robust steps could agree."""
    rm = load_roadmap(None)
    level = 12.0 if evals.images == 10_000 else 90.0  # 10 classes: chance is 10 %
    fid = assess(_equivalence_table(0.05, 5, level=level), rm.paper_path, evals)
    assert {c.verdict for c in fid.checks} == {"inconclusive"}
    assert all("near chance" in c.why for c in fid.checks)
    good = assess(_equivalence_table(0.05, 5, level=90.0), rm.paper_path, EvalSet(10, 10_000))
    assert good.count("robust", "agrees") == 8 and good.count("equivalence", "passes") == 5


def test_near_chance_rule() -> None:
    assert near_chance(14.9, EvalSet(10, 10_000)) and not near_chance(15.1, EvalSet(10, 10_000))
    assert near_chance(5.9, EvalSet(100, 10_000)) and not near_chance(5.9, EvalSet(None, None))
    assert "50 images" in near_chance(95.0, EvalSet(10, 50))


def test_eval_set_of_the_data_sets() -> None:
    from modernize.data.memory import synthetic

    assert eval_set_of("fashion-mnist") == EvalSet(10, 10_000)
    assert eval_set_of("cifar100", 500) == EvalSet(100, 500)
    assert eval_set_of("synthetic:200") == EvalSet(10, len(synthetic(200)["val"]))
    assert eval_set_of("synthetic") == EvalSet(10, len(synthetic(512)["val"]))
    assert eval_set_of("imagefolder:/nowhere") == EvalSet(None, None)


def test_welch_interval_equals_scipy_on_raw_samples() -> None:
    a, b = [80.1, 81.3, 80.7, 79.9], [78.0, 78.9, 77.5]
    diff, lo, hi = welch_interval(statistics.mean(a), statistics.stdev(a), len(a),
                                  statistics.mean(b), statistics.stdev(b), len(b))
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(statistics.mean(a) - statistics.mean(b))
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_assess_counts_end_to_end_and_binomial() -> None:
    # Every step gains exactly the paper's delta (+ small seed noise): all 8 robust steps agree.
    rm = load_roadmap(None)
    top1: dict[str, list[float]] = {}
    for s in rm:
        base = float(s.paper["paper_top1"])
        top1[s.name] = [base - 0.05, base, base + 0.05]
    fid = assess(_table("resnet50_to_convnext_t", top1), rm.paper_path)
    assert (fid.count("robust", "agrees"), fid.robust, fid.sign_matches) == (8, 8, 8)
    assert fid.count("equivalence", "fails") == 0 and fid.count("equivalence", "passes") == 5
    assert fid.binomial_p == pytest.approx(0.5**8)
    final, anchor, diff, lo, hi = fid.end_to_end
    assert (final, anchor) == ("separate_downsampling", "recipe")
    assert diff == pytest.approx(81.97 - 78.82) and lo < diff < hi and lo > 0
    # Flip one robust step (widen loses 3 points): it disagrees; the count drops by one.
    top1["widen"] = [v - 3 - 2.22 for v in top1["widen"]]
    fid = assess(_table("resnet50_to_convnext_t", top1), rm.paper_path)
    assert fid.count("robust", "agrees") == 7 and fid.count("robust", "disagrees") == 1


@pytest.mark.parametrize("preset", ["cpu", "fidelity", "fidelity32"])
@pytest.mark.parametrize("roadmap", ["resnet50_to_convnext_t", "resnet200_to_convnext_b"])
def test_proxy_rules_apply_identically_to_every_step(preset: str, roadmap: str) -> None:
    """A proxy may never special-case a step: each rule is a function of the spec alone."""
    from modernize.proxy import PROXIES, low_res, scale

    p = PROXIES[preset]
    for step in load_roadmap(roadmap):
        got = p.apply(step.spec)
        want = low_res(scale(step.spec, width=p.width, depth=p.depth), stem_stride=p.stem_stride)
        std = 0.02 / math.sqrt(p.width) if p.init == "width" else 0.02
        ls = p.layer_scale if (p.layer_scale is not None and step.spec.layer_scale > 0) else step.spec.layer_scale
        assert got == want.replace(init_std=std, layer_scale=ls), step.name
        assert got.init_std == pytest.approx(std) and got.layer_scale == ls


def test_init_std_reaches_every_conv_and_linear_weight() -> None:
    import torch

    from modernize import build_model

    spec = load_roadmap(None)[-1].spec
    for std in (0.02, 0.04):
        torch.manual_seed(0)
        model = build_model(spec.replace(init_std=std, dims=(96, 192, 384, 768), depths=(1, 1, 1, 1)))
        layers = (torch.nn.Conv2d, torch.nn.Linear)
        w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, layers)])
        assert w.std().item() == pytest.approx(std, rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("roadmap, folder", [("resnet50_to_convnext_t", True), ("resnet200_to_convnext_b", False)])
def test_main_job_proxy_rules_carry_to_an_image_folder_and_to_resnet200(tmp_path, roadmap: str, folder: bool) -> None:
    """The main job's recipe and proxy rules, unchanged but for a tiny budget, run a whole
    roadmap on real PNG files (``imagefolder:``) and the ResNet-200 roadmap, and the report has
    every step with its paper check."""
    import json

    from modernize.cli import main
    from modernize.recipe import load_recipe
    from tests.folder_fixture import export_fashion

    quick = load_recipe("quick")
    budget = dict(train_images=64, val_images=64, precise_bn_batches=2)
    values = quick.to_dict() | budget
    values["substitute"] = {k: dict(v) | budget for k, v in values["substitute"].items()}
    assert values["proxy"] == "fidelity32"
    text = recipe_text({k: v for k, v in values.items() if k not in ("name", "substitute")})
    text += "".join(f"[substitute.{sub}]\n{recipe_text(keys)}" for sub, keys in values["substitute"].items())
    recipe = tmp_path / "tiny_quick.toml"
    recipe.write_text(text)
    data = f"imagefolder:{export_fashion(tmp_path / 'png', train=64, val=64)}" if folder else "fashion-mnist"
    run = tmp_path / "run"
    assert main(["train", roadmap, "--data", data, "--recipe", str(recipe), "--seeds", "0", "--out", str(run)]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    table = pd.read_csv(tmp_path / "report" / "table.csv")
    rm = load_roadmap(roadmap)
    assert list(table["step"]) == [s.name for s in rm]
    assert table["top1_mean"].notna().all()
    proxy = json.loads((run / "run.json").read_text())["proxy"]
    assert {k: proxy[k] for k in ("width", "depth", "stem_stride", "init", "layer_scale")} == dict(
        width=0.25, depth=0.34, stem_stride=2, init="width", layer_scale=1.0)
    assert table["paper_check"].notna().sum() >= 8


def test_proxy_study_configs_change_step_zero_alike() -> None:
    """A proxy-study configuration changes the step-0 substitute (the original ResNet recipe)
    by the same budget and input-size keys as every other step: a key the substitute table
    does not list (``resize`` for configs J and K) must reach it too, or ResNet-50 would train
    on other pixels than the rest of the roadmap."""
    from modernize.recipe import load_recipe

    study = load_script("proxy_study")

    names = [c.name for c in study.CONFIGS]
    assert len(names) == len(set(names)) and {"J", "K"} <= set(names)
    for cfg in study.CONFIGS:
        recipe = study.derive(load_recipe(cfg.base), cfg.recipe, f"study_{cfg.name}")
        step0 = recipe.for_step("resnet_original")
        for key in study.SCALE_KEYS:
            assert getattr(step0, key) == getattr(recipe, key), (cfg.name, key)
        assert step0.optimizer == "sgd" and recipe.optimizer == "adamw"


@pytest.mark.parametrize("flag", ["--only", "--probes"])
def test_proxy_study_refuses_an_unknown_name(flag: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped configuration or probe name is one line and exit 2, not a silent no-op."""
    study = load_script("proxy_study")
    monkeypatch.setattr(study, "run_config", _forbidden)
    monkeypatch.setattr(study, "run_probes", _forbidden)
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit
        study.cli([flag, "Z9"])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert f"{flag}: unknown name(s) " in err and "Z9" in err and "Traceback" not in err, err
    assert not out


def test_proxy_study_errors_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the library refuses (here a bad --seeds, as train_roadmap raises it) leaves the script
    as the library's one line and exit 2, not a traceback."""
    from modernize.errors import ConfigError

    study = load_script("proxy_study")

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConfigError("--seeds: seeds must be >= 0, got [-1]")

    monkeypatch.setattr(study, "run_config", refuse)
    assert study.cli(["--only", "A", "--seeds", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --seeds: seeds must be >= 0, got [-1]"], err


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("trained despite an unknown name")


def test_proxy_study_reuse_takes_the_other_configs_jobs_only_if_the_check_step_equals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration with ``reuse`` (Q: P plus a knob only the last step has) is P's table but for
    its own trained steps, and only while its check step equals P's at every seed."""
    import dataclasses

    from modernize.errors import ConfigError
    from tests.report_fixture import make_run

    study = load_script("proxy_study")
    all_steps = [s.name for s in load_roadmap("resnet50_to_convnext_t")]
    p_truth = make_run(tmp_path / "P", top1={"bn_to_ln": [80.0, 80.5, 81.0]})
    own = {"bn_to_ln": [80.0, 80.5, 81.0], "separate_downsampling": [90.0, 91.0, 92.0]}
    make_run(tmp_path / "Q", top1=own, missing_steps=tuple(s for s in all_steps if s not in own))
    p = dataclasses.replace(next(c for c in study.CONFIGS if c.name == "P"), run_dir=tmp_path / "P")
    q = dataclasses.replace(next(c for c in study.CONFIGS if c.name == "Q"), run_dir=tmp_path / "Q")
    assert q.reuse == "P" and q.steps == ("bn_to_ln", "separate_downsampling")
    monkeypatch.setattr(study, "CONFIGS", [p, q])
    table = study.config_table(q)[0].set_index("step")
    assert list(table.index) == all_steps
    assert table.loc["separate_downsampling", "top1_mean"] == pytest.approx(91.0)
    assert table.loc["recipe", "top1_mean"] == pytest.approx(statistics.mean(p_truth["recipe"].values()))
    row = study.study_row(q)
    assert row["separate_downsampling"] == "91.00±1.00" and row["config"] == "Q"
    # an own step not trained (yet) shows as missing, never as the reused configuration's value
    make_run(tmp_path / "Q1", top1=own, missing_steps=tuple(s for s in all_steps if s != "bn_to_ln"))
    table = study.config_table(dataclasses.replace(q, run_dir=tmp_path / "Q1"))[0].set_index("step")
    assert table.loc["separate_downsampling", "n"] == 0 and pd.isna(table.loc["separate_downsampling", "top1_mean"])
    assert table.loc["bn_to_ln", "top1_mean"] == pytest.approx(80.5)
    make_run(tmp_path / "Q2", top1=own | {"bn_to_ln": [80.0, 80.6, 81.0]},
             missing_steps=tuple(s for s in all_steps if s not in own))
    with pytest.raises(ConfigError, match="bn_to_ln seed 1 gave 80.6, config P 80.5"):
        study.config_table(dataclasses.replace(q, run_dir=tmp_path / "Q2"))


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_train_roadmap_refuses_a_worker_count_below_one(tmp_path: Path, workers: object) -> None:
    """``workers=0`` used to train serially without a word (only the command line checked it);
    the library now refuses it for every caller, before anything is written."""
    from modernize.errors import ConfigError
    from modernize.train import train_roadmap

    with pytest.raises(ConfigError, match="workers: a whole number >= 1"):
        train_roadmap(None, data="synthetic:32", seeds=[0], out=tmp_path / "run", device="cpu",
                      workers=workers)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_proxy_study_refuses_zero_workers(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    study = load_script("proxy_study")
    monkeypatch.setattr(study, "run_config", _forbidden)
    with pytest.raises(SystemExit) as exit_:
        study.cli(["--only", "A", "--workers", "0"])
    assert exit_.value.code == 2 and "--workers" in capsys.readouterr().err
