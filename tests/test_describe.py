"""The teaching view: every step of both roadmaps names the change its transform made,
drawings come from the built block, per-stage counts add up to the whole-model count."""

from __future__ import annotations

from functools import cache

import pytest

from modernize.cli import main
from modernize.complexity import count
from modernize.roadmap import Roadmap, Step, load_roadmap
from modernize.spec import BASE_SPECS
from modernize.views.describe import (
    WIDTH,
    _shallow_model,
    change_phrases,
    describe,
    describe_step,
    drawing,
    module_macs,
    stage_counts,
)

ROADMAPS = {name: load_roadmap(name) for name in ("resnet50_to_convnext_t", "resnet200_to_convnext_b")}
CASES = [(rm, step.name) for rm, roadmap in ROADMAPS.items() for step in roadmap]

# A phrase only the transform's own change produces: absent from steps that do not apply it.
SIGNATURE = {"stage_ratio": "blocks per stage", "patchify_stem": "patchify", "depthwise": "becomes depthwise",
             "inverted_bottleneck": "block shape", "move_up_dwconv": "moves from", "kernel_size": "(padding",
             "gelu": "everywhere", "fewer_activations": "activations:", "fewer_norms": "layers in a block",
             "bn_to_ln": "becomes a LayerNorm", "separate_downsampling": "downsampling:",
             "layer_scale": "layer scale"}


def _seq(v: tuple[int, ...]) -> str:
    return ",".join(map(str, v))


def expected(roadmap: Roadmap, step: Step) -> list[str]:
    """What the transform (with the roadmap's parameters) must be described as doing."""
    parent = roadmap[step.parent].spec if step.parent else None
    want: list[str] = []
    for name, params in step.transforms:
        if name == "stage_ratio":
            # the parent's depths (the first transform of the step sees them)
            want.append(f"{_seq(parent.depths)} -> {_seq(tuple(params['depths']))}")
        elif name == "widen":
            want += [f"3->{params['width']}", _seq(step.spec.dims)]
        elif name == "patchify_stem":
            p = params.get("patch", 4)
            want += [f"{p}x{p}/{p}", "patchify"]
        elif name == "depthwise":
            want.append("becomes depthwise")
        elif name == "inverted_bottleneck":
            want += ["inverted bottleneck", _seq(step.spec.dims)]
        elif name == "move_up_dwconv":
            want += ["moves from the middle of the block", "to the top of the block (kxk -> 1x1 -> 1x1)"]
        elif name == "kernel_size":
            k = params["kernel_size"]
            want.append(f"3x3 -> {k}x{k}")
        elif name == "gelu":
            want.append("ReLU -> GELU")
        elif name == "fewer_activations":
            want.append("a single one, between the two 1x1 convs")
        elif name == "fewer_norms":
            want.append("a single one, after the spatial conv")
        elif name == "bn_to_ln":
            want += ["BatchNorm becomes a LayerNorm", "gain a bias"]
        elif name == "separate_downsampling":
            want += ["2x2 stride-2 conv between stages", "after global pooling", "| LN"]
        elif name == "layer_scale":
            want.append(f"layer scale added: a learnable per-channel scale on each residual branch, "
                        f"init {params['init']:g}")
        else:  # a new transform must get an expectation here
            raise AssertionError(f"no expectation for transform {name}")
    if not step.transforms:
        want.append("no architecture change" if parent is not None else "Starting point")
    return want


def changed_section(text: str) -> str:
    start = text.find("What changed")
    return "" if start < 0 else text[start:text.index("\n\n", start)]


@cache
def text_of(rm: str, step: str) -> str:
    return describe_step(ROADMAPS[rm], ROADMAPS[rm][step], counts=False)


@pytest.mark.parametrize("rm, step", CASES)
def test_describe_names_the_change(rm: str, step: str) -> None:
    roadmap = ROADMAPS[rm]
    s = roadmap[step]
    text = text_of(rm, step)
    section = " ".join((changed_section(text) if s.parent else text).split())  # undo line wrapping
    for want in expected(roadmap, s):
        assert want in section, f"{rm}/{step}: expected {want!r} in\n{section}"
    applied = {name for name, _ in s.transforms}
    for tname, sig in SIGNATURE.items():
        if tname not in applied and s.parent:
            assert sig not in section, f"{rm}/{step}: mentions {tname}'s change ({sig!r}) it did not make"
    assert all(len(line) <= WIDTH for line in text.splitlines()), "a line is wider than the terminal"


@pytest.mark.parametrize("rm, step", CASES)
def test_bullets_are_the_spec_difference(rm: str, step: str) -> None:
    roadmap = ROADMAPS[rm]
    s = roadmap[step]
    text = text_of(rm, step)
    if not s.parent:  # the first step: the base network, nothing to compare with
        assert "parent: none" in text and "Starting point: the roadmap's base network" in text
        assert changed_section(text) == "" and not [ln for ln in text.splitlines() if ln.startswith("    - ")]
        return
    parent = roadmap[s.parent]
    phrases = change_phrases(parent.spec, s.spec)
    section = changed_section(text)
    bullets = [line for line in section.splitlines() if line.startswith("    - ")]
    recipe = int((s.recipe or roadmap.recipe) != (parent.recipe or roadmap.recipe))
    assert sum("training recipe" in b for b in bullets) == recipe
    assert len(bullets) == max(len(phrases), 1) + recipe
    assert bool(phrases) == bool(s.spec.diff(parent.spec))


def test_block_drawings_follow_the_built_block() -> None:
    r50 = BASE_SPECS["resnet50"]
    assert drawing(r50).block == ("1x1 256->128 | BN | ReLU | 3x3/2 128->128 | BN | ReLU | 1x1 128->512 | BN"
                                  "  + proj(1x1/2 256->512 | BN) -> ReLU")
    assert drawing(r50).stem == "7x7/2 3->64 | BN | ReLU | maxpool 3x3/2"
    t = drawing(BASE_SPECS["convnext_tiny"])
    assert t.block == "dw 7x7 192 | LN | 1x1 192->768 | GELU | 1x1 768->192 | x layer scale  + x"
    assert t.downsample == "LN | 2x2/2 96->192" and t.stem == "4x4/4 3->96 | LN" and t.linear_1x1
    assert t.head == "avgpool | LN | fc 768->1000"


@pytest.mark.parametrize("spec_name, step", [("resnet50", None), ("convnext_tiny", None),
                                             (None, "inverted_bottleneck")])
def test_stage_counts_add_up_to_the_whole_model(spec_name: str | None, step: str | None) -> None:
    spec = BASE_SPECS[spec_name] if spec_name else ROADMAPS["resnet50_to_convnext_t"][step].spec
    spec = spec.replace(depths=(1, 3, 2, 1))  # 3 blocks: the depth scaling is exercised; small: fast
    parts = stage_counts(spec, 64)
    whole = count(spec, 64)  # fvcore on the full-depth model
    assert parts[-1].name == "total"
    assert parts[-1].macs == whole.macs
    assert parts[-1].params == whole.params
    assert sum(p.macs for p in parts[:-1]) == parts[-1].macs


def test_meta_counts_equal_fvcore_per_module() -> None:
    import torch
    from fvcore.nn import FlopCountAnalysis

    from modernize.model import build_model

    spec = ROADMAPS["resnet50_to_convnext_t"]["separate_downsampling"].spec.replace(depths=(1, 2, 1, 1))
    real = build_model(spec).eval()
    fca = FlopCountAnalysis(real, torch.zeros(1, 3, 64, 64))
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    ours = module_macs(_shallow_model(spec), 64)
    by = fca.by_module()
    assert ours and all(by[name] == v for name, v in ours.items())


def test_r50_at_224_matches_paper_counts() -> None:
    # One full-resolution pass over the default roadmap: totals equal the paper's analytic GMACs.
    roadmap = ROADMAPS["resnet50_to_convnext_t"]
    for s in roadmap:
        assert stage_counts(s.spec, 224)[-1].macs / 1e9 == pytest.approx(float(s.paper["analytic_gmacs"]), abs=5e-5)
        assert stage_counts(s.spec, 224)[-1].params / 1e6 == pytest.approx(float(s.paper["analytic_params_m"]),
                                                                          abs=0.01)


def test_describe_with_counts_reads_well() -> None:
    text = describe(ROADMAPS["resnet50_to_convnext_t"], ["stage_ratio"], resolution=224)
    assert "stage 2                 1.220    0.940    -0.280           1.0276   0.8092   -0.2184" in text
    assert "total                  25.557   28.629    +3.071           4.0892   4.5259   +0.4367" in text
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_cli_describe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--step", "kernel_9", "--no-counts"]) == 0
    out = capsys.readouterr().out
    assert "kernel_9" in out and "3x3 -> 9x9" in out and "== 11/17" in out
    assert main(["describe", "resnet200_to_convnext_b", "--step", "stage_ratio_widen", "--resolution", "64"]) == 0
    out = capsys.readouterr().out
    assert "3,24,36,3 -> 3,3,27,3" in out and "at 64 px" in out


def test_cli_describe_unknown_step_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--step", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --step: unknown step(s) nope") and "\n" not in err


def test_describe_step_takes_a_name_as_step_diagram_does() -> None:
    """A notebook passes a step or its name; an unknown one, or a step of another roadmap, is
    one ConfigError naming the roadmap's steps (not an AttributeError or a ValueError)."""
    from modernize.errors import ConfigError

    rm = load_roadmap(None)
    assert describe_step(rm, "gelu", counts=False) == describe_step(rm, rm["gelu"], counts=False)
    other = load_roadmap("resnet200_to_convnext_b")
    for bad in ("nope", 3, other["stage_ratio_widen"]):
        with pytest.raises(ConfigError, match="is not in roadmap 'resnet50_to_convnext_t'"):
            describe_step(rm, bad, counts=False)  # type: ignore[arg-type]


def test_describe_and_diagrams_agree_on_a_user_kind() -> None:
    """One layer view feeds both: a user activation returning its own class is an activation
    with the kind's token in the text and the kind's colour class and label in the diagram."""
    from torch import nn

    from modernize.kinds import REGISTRIES, register_act
    from modernize.model import build_model
    from modernize.views.diagram import side_of
    from modernize.views.layer_view import block_view

    class Wobble(nn.Module):  # a class name nothing in the package knows
        def forward(self, x):  # type: ignore[no-untyped-def]
            return x * 0.5

    register_act("test_wobble", label="wobble activation", token="WOB")(lambda: Wobble())
    try:
        spec = BASE_SPECS["resnet50"].replace(act="test_wobble")
        block = build_model(spec, device="meta").stages[1].blocks[0]
        view = block_view(block)
        text = drawing(spec).block
        part = side_of(spec).parts["block"]
        assert [v.name for v in view.branch] == [la.name for la in part.layers]
        assert text.split("  + ")[0].split(" | ") == [v.token for v in view.branch]
        acts = [la for la in part.all_layers if la.name.startswith("act_")]
        assert acts and all(la.kind == "act" and la.label == "wobble activation" for la in acts)
        assert text.count("WOB") == len(acts) and "Wobble" not in text
    finally:
        del REGISTRIES["act"]["test_wobble"]
