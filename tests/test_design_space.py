"""The open design space (``modernize.kinds``): built-in kinds beyond the paper, a user module
that registers its own, and everything downstream (builder, counting, describe, fingerprint,
training) working for them without editing the package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from modernize import SpecError, base_spec, build_model, count, load_roadmap
from modernize.bench import bench_roadmap
from modernize.cli import main as cli_main
from modernize.kinds import REGISTRIES
from modernize.proxy import CPU_PROXY
from modernize.spec import ArchSpec
from modernize.train.fingerprint import user_kind_hashes
from modernize.transforms import TRANSFORMS
from modernize.views.describe import describe, drawing, stage_counts

ROOT = Path(__file__).resolve().parent.parent
R50, CONVNEXT_T = base_spec("resnet50"), base_spec("convnext_tiny")


# --- built-in kinds ---------------------------------------------------------------------------

BUILTIN_CASES = {
    "silu": R50.replace(act="silu"),
    "hardswish": CONVNEXT_T.replace(act="hardswish"),
    "group": R50.replace(norm="group", norm_args={"groups": 8}),
    "group_convnext": CONVNEXT_T.replace(norm="group", norm_args={"groups": 4}),
    "se_resnet": R50.replace(components=["se"]),
    "se_after_dw_channels_last": CONVNEXT_T.replace(components=[{"kind": "se", "at": "after_spatial",
                                                                  "reduction": 4}]),
    "grn_convnext_v2": CONVNEXT_T.replace(components=["grn"]),
    "grn_resnet": R50.replace(components=["grn@before_last"]),
}


@pytest.mark.parametrize("case", BUILTIN_CASES)
def test_builtin_kind_builds_and_trains_one_step(case: str) -> None:
    spec = CPU_PROXY.apply(BUILTIN_CASES[case]).replace(num_classes=10, layer_scale=0.1)
    torch.manual_seed(0)
    model = build_model(spec)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())  # every tensor initialized
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.grad is not None
               and p.grad.abs().sum() > 0)
    model.eval()
    assert model(x).shape == (4, 10)


def test_paper_specs_unchanged_by_the_new_fields() -> None:
    for spec in (R50, CONVNEXT_T):
        assert not {"act_args", "norm_args", "components"} & set(spec.to_dict())
        assert ArchSpec.from_dict(spec.to_dict()) == spec
    with_se = R50.replace(components=["se"])
    assert with_se.to_dict()["components"] == [{"kind": "se", "at": "end"}]
    assert ArchSpec.from_dict(with_se.to_dict()) == with_se


def test_se_macs_match_a_hand_count() -> None:
    """SE-ResNet-50 (reduction 16): per block two 1x1 convs on the pooled 1x1 map, C -> C/16 ->
    C, i.e. 2 C^2 / 16 MACs; fvcore and describe's per-stage counts both see them."""
    spec = R50.replace(components=["se"])
    hand = sum(depth * 2 * c * (c // 16) for depth, c in zip(R50.depths, R50.dims))
    assert hand == 2_514_944
    # the convs act on the pooled 1x1 map: the same MACs at any input size (32 px: a quick trace)
    with_se, without = count(spec, 32), count(R50, 32)
    assert with_se.macs - without.macs == hand
    assert stage_counts(spec, 32)[-1].macs - stage_counts(R50, 32)[-1].macs == hand
    params = sum(depth * (2 * c * (c // 16) + c + c // 16) for depth, c in zip(R50.depths, R50.dims))
    assert with_se.params - without.params == params


def test_component_places_and_names() -> None:
    spec = CPU_PROXY.apply(CONVNEXT_T).replace(components=["se@after_spatial", "grn", "se"])
    block = build_model(spec, device="meta").stages[0].blocks[0]
    assert [n for n, _ in block.branch()] == ["conv_dw", "norm_dw", "se_after_spatial", "conv_pw1", "act_pw1",
                                              "grn_before_last", "conv_pw2", "se_end"]
    assert [len(p) for p in block.places["after_spatial"]] == [0, 1]  # SE is NCHW-only: an NCHW view
    assert "SE" in drawing(spec).block and "GRN" in drawing(spec).block
    with pytest.raises(SpecError, match="'se' appears twice at 'end'"):
        R50.replace(components=["se", "se@end"])
    with pytest.raises(SpecError, match="place 'middle'"):
        R50.replace(components=["se@middle"])
    with pytest.raises(SpecError, match="unknown component kind 'cbam'.*register_component"):
        R50.replace(components=["cbam"])
    with pytest.raises(SpecError, match="has no parameter 'ratio'.*reduction"):
        R50.replace(components=[{"kind": "se", "ratio": 4}])


def test_groupnorm_groups_must_divide_every_width() -> None:
    assert R50.replace(norm="group").norm_args == ()  # 32 groups divide 64 ... 2048
    with pytest.raises(SpecError, match=r"spec field 'norm_args'.*32 groups do not divide a width of 16"):
        CPU_PROXY.apply(R50.replace(norm="group"))
    with pytest.raises(SpecError, match="norm_args.*has no parameter 'group'"):
        R50.replace(norm="group", norm_args={"group": 8})
    with pytest.raises(SpecError, match="unknown act kind 'swish'"):
        R50.replace(act="swish")


BUILTIN_TRANSFORMS_ROADMAP = """
        name = "t"
        [[steps]]
        name = "r50"
        [[steps]]
        name = "silu"
        apply = {transform = "act", kind = "silu"}
        [[steps]]
        name = "gn"
        apply = {transform = "norm", kind = "group", args = {groups = 16}}
        [[steps]]
        name = "se"
        apply = {transform = "add_block_component", kind = "se", at = "after_spatial", args = {reduction = 8}}
        [[steps]]
        name = "no_se"
        apply = {transform = "remove_block_component", kind = "se"}
"""


def test_builtin_transforms_in_a_roadmap(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent(BUILTIN_TRANSFORMS_ROADMAP))
    rm = load_roadmap(path)
    assert rm["silu"].spec.act == "silu"
    assert rm["gn"].spec.norm == "group" and dict(rm["gn"].spec.norm_args) == {"groups": 16}
    assert [c.to_dict() for c in rm["se"].spec.components] == [{"kind": "se", "at": "after_spatial", "reduction": 8}]
    assert rm["no_se"].spec == rm["gn"].spec
    text = describe(rm, counts=False)
    assert "activation ReLU -> SiLU everywhere" in text
    assert "every BatchNorm becomes a GroupNorm (groups 16)" in text
    assert "squeeze-and-excitation (reduction 8) after the kxk conv" in text
    assert "| SE |" in text


# --- a user module ------------------------------------------------------------------------------

USER_MODULE = '''
import torch
from torch import nn
from modernize.kinds import register_act, register_component, register_norm
from modernize.transforms import register_transform

SCALE = {scale}


class SwishBeta(nn.Module):
    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x) * SCALE


@register_act("{p}swish", label="Swish-beta", token="SwishB")
def swish(*, beta: float = 1.0):
    return SwishBeta(beta)


class RMSNorm(nn.Module):
    """RMS over channels (dim 1 of an NCHW or NC tensor) with a learnable scale."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(channels))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps) * self.weight.view(shape)


@register_norm("{p}rms", label="RMSNorm", token="RMS")
def rms(channels, *, layout, eps: float = 1e-6):
    return RMSNorm(channels, eps)


class Gate(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


@register_component("{p}gate", label="channel gate", token="Gate", place="end")
def gate(channels, *, layout):
    return Gate(channels)


@register_transform("{p}modern", label="my modernization")
def modern(spec, *, beta: float = 1.5):
    spec = spec.replace(act="{p}swish", act_args={{"beta": beta}}, norm="{p}rms")
    return spec.replace(components=(*spec.components, "{p}gate"))
'''

USER_ROADMAP = '''
name = "mine"
base = "resnet50"
imports = ["{module}"]

[[steps]]
name = "resnet50"

[[steps]]
name = "mine"
apply = "{p}modern"

[[steps]]
name = "mine_by_builtins"
from = "resnet50"
apply = [{{transform = "act", kind = "{p}swish", args = {{beta = 1.5}}}}, {{transform = "norm", kind = "{p}rms"}},
         {{transform = "add_block_component", kind = "{p}gate"}}]
'''


def write_user(tmp: Path, module: str, p: str, scale: float = 1.0) -> Path:
    (tmp / f"{module}.py").write_text(USER_MODULE.format(p=p, scale=scale))
    path = tmp / "mine.toml"
    path.write_text(USER_ROADMAP.format(module=module, p=p))
    return path


@pytest.fixture
def user(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, str]]:
    """A user module and roadmap in tmp_path; the registrations are undone afterwards."""
    p = f"u{abs(hash(request.node.name)) % 10**6}_"
    module = f"{p}kinds"
    yield write_user(tmp_path, module, p), p
    sys.modules.pop(module, None)
    for registry in (*REGISTRIES.values(), TRANSFORMS):
        for name in [n for n in registry if n.startswith(p)]:
            del registry[name]


def test_user_kinds_through_builder_counting_and_describe(user: tuple[Path, str]) -> None:
    path, p = user
    rm = load_roadmap(path)
    spec = rm["mine"].spec
    assert rm["mine_by_builtins"].spec == spec
    assert (spec.act, dict(spec.act_args), spec.norm, spec.components[0].kind) == (f"{p}swish", {"beta": 1.5},
                                                                                   f"{p}rms", f"{p}gate")
    model = build_model(CPU_PROXY.apply(spec).replace(num_classes=10))
    assert type(model.stem.norm).__name__ == "RMSNorm" and type(model.head.norm).__name__ == "Identity"
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10)
    # the gate's 1x1 conv on the pooled map: C^2 MACs per block, C = the block's output width
    hand = sum(d * c * c for d, c in zip(spec.depths, spec.dims))
    assert count(spec, 32).macs - count(rm["resnet50"].spec, 32).macs == hand
    assert stage_counts(spec, 32)[-1].macs - stage_counts(rm["resnet50"].spec, 32)[-1].macs == hand
    text = describe(rm, ["mine"])
    assert "activation ReLU -> Swish-beta (beta 1.5) everywhere" in text
    assert "every BatchNorm becomes a RMSNorm (eps 1e-06)" in text
    assert "every block gains a channel gate at the end of the residual branch" in text
    assert "RMS | SwishB" in text and "RMS | Gate" in text


def test_user_kinds_from_the_command_line(user: tuple[Path, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = user
    assert cli_main(["flops", str(path), "--out", str(tmp_path / "flops")]) == 0
    assert "mine_by_builtins" in capsys.readouterr().out
    # a fresh process: the roadmap's imports register the kinds there too
    proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), "describe", str(path),
                           "--step", "mine", "--no-counts"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Swish-beta" in proc.stdout and "Gate" in proc.stdout


def test_fingerprint_covers_the_user_module_source(user: tuple[Path, str], tmp_path: Path) -> None:
    path, p = user
    rm = load_roadmap(path)
    first = user_kind_hashes(rm["mine"].spec)
    assert set(first) == {f"act:{p}swish", f"norm:{p}rms", f"component:{p}gate"}
    assert user_kind_hashes(rm["resnet50"].spec) == {}  # paper steps: no 'kinds' part at all
    assert user_kind_hashes(load_roadmap(path)["mine"].spec) == first  # same source, same hash
    write_user(tmp_path, f"{p}kinds", p, scale=2.0)  # the user edits the module
    sys.modules.pop(f"{p}kinds")
    second = user_kind_hashes(load_roadmap(path)["mine"].spec)
    assert set(second) == set(first) and all(second[k] != first[k] for k in first)


def test_unknown_user_kind_names_how_to_register(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[[steps]]\nname = "a"\napply = {transform = "act", kind = "mish"}\n')
    with pytest.raises(Exception, match=r"step 'a'.*unknown act kind 'mish'.*register_act.*imports"):
        load_roadmap(path)


@pytest.mark.slow
def test_user_kinds_train_under_two_workers(user: tuple[Path, str], tmp_path: Path) -> None:
    """Spawned workers import the roadmap's user modules themselves (kinds are looked up by name)."""
    path, p = user
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('epochs = 1\nbatch_size = 16\nlr = 2e-3\nlr_batch = 16\nwarmup_epochs = 0\nresolution = 16\n'
                      'crop = "none"\nhflip = false\ndrop_path = 0.0\nlabel_smoothing = 0.0\nprecision = "fp32"\n'
                      'channels_last = false\n')
    script = tmp_path / "go.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from modernize.proxy import ProxyScale
        from modernize.train import train_roadmap
        if __name__ == "__main__":
            train_roadmap({str(path)!r}, data="synthetic:32", recipe={str(recipe)!r}, seeds=[0, 1],
                          out=Path({str(tmp_path / 'run')!r}), steps=["mine"], device="cpu", progress=False,
                          proxy=ProxyScale(width=0.125, depth=0.34, stem_stride=2), workers=2, threads=1)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = bench_roadmap(load_roadmap(path), batch=1, resolution=32, repeats=1, warmup=1, steps=["mine"]).iloc[0]
    assert row["step"] == "mine" and row["infer_img_s"] > 0
    results = [(tmp_path / "run" / "mine" / f"seed{seed}" / "result.json") for seed in (0, 1)]
    first = [r.read_text() for r in results]
    config = json.loads((results[0].parent / "config.json").read_text())
    assert set(config["fingerprint_parts"]["kinds"]) == {f"act:{p}swish", f"norm:{p}rms", f"component:{p}gate"}
    # the same module again: the jobs are reused, not retrained
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r.read_text() for r in results] == first
    proc = subprocess.run([sys.executable, str(ROOT / "run_ablation.py"), "report", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
