"""Block diagrams: drawn from the built modules, the changed layers marked by module name +
type + shape, unknown module kinds drawn generically, SVG/PNG from Python and `describe --figure`."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from modernize.cli import main
from modernize.roadmap import load_roadmap
from modernize.views.diagram import compare, layer_of, side_of
from modernize.views.diagram_draw import SLIDE, save_step_diagram, step_comparison, step_diagram

R50 = load_roadmap("resnet50_to_convnext_t")
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def marks(step: str, part: str = "block") -> dict[str, str]:
    """Module name -> status of the after-side layers of ``part`` that the step marked."""
    comp = step_comparison(R50, step)
    return {la.name: la.status for la in comp.after.parts[part].all_layers if la.status}


def test_first_step_has_nothing_to_compare() -> None:
    comp = step_comparison(R50, "resnet50")
    assert comp.before is None and comp.shown == ("block",)
    block = comp.after.parts["block"]
    assert [la.label for la in block.layers][:4] == ["conv 1x1, 256→128", "BatchNorm, 128 ch", "ReLU",
                                                      "conv 3x3 /2, 128→128"]
    assert [la.label for la in block.shortcut] == ["conv 1x1 /2, 256→512", "BatchNorm, 512 ch"]
    assert block.shape_in == "256×56×56" and block.shape_out == "512×28×28"


@pytest.mark.parametrize("step, expected", [
    ("recipe", {}),  # training only: no layer changes
    ("stage_ratio", {}),  # depths change, the drawn block does not (the stages line does)
    ("depthwise", {"conv_dw": "changed"}),  # conv_kxk -> conv_dw: a renamed slot, paired by position
    ("kernel_7", {"conv_dw": "changed"}),
    ("gelu", {"act_dw": "changed", "act_pw1": "changed", "act_out": "changed"}),
    ("move_up_dwconv", {"conv_dw": "moved, changed", "norm_dw": "moved, changed", "act_dw": "moved"}),
])
def test_marked_layers(step: str, expected: dict[str, str]) -> None:
    assert marks(step) == expected


def test_removed_and_new_parts() -> None:
    comp = step_comparison(R50, "separate_downsampling")
    assert comp.shown == ("stem", "downsample", "block", "head")
    assert {la.name for la in comp.removed} == {"shortcut.conv", "shortcut.norm"}
    assert marks("separate_downsampling", "downsample") == {"norm": "new", "conv": "new"}
    assert marks("separate_downsampling")["gamma"] == "new"
    assert comp.before.stages != () and step_comparison(R50, "stage_ratio").after.stages[2][0] == 9
    fewer = step_comparison(R50, "fewer_norms")
    assert {la.name for la in fewer.removed} == {"norm_pw1", "norm_pw2"}


def test_a_linear_counts_as_the_1x1_conv_it_computes() -> None:
    """bn_to_ln turns the 1x1 convs into nn.Linear (channels-last): only the bias is new."""
    conv, lin = layer_of("c", nn.Conv2d(96, 384, 1, bias=True)), layer_of("c", nn.Linear(96, 384))
    assert conv.key == lin.key
    assert layer_of("c", nn.Conv2d(96, 384, 1, bias=False)).key != lin.key


class _UserBlock(nn.Module):
    """A block with a kind this package does not know (torchvision's squeeze-and-excitation)."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(192, 192, 7, padding=3, groups=192)
        self.se = SqueezeExcitation(192, 48)
        self.act = nn.Hardswish()
        self.shortcut = nn.Identity()
        if order == "method":
            self.branch = lambda: [("conv_dw", self.conv_dw), ("se", self.se), ("act", self.act)]


@pytest.mark.parametrize("order", ["method", "children"])
def test_unknown_module_kind_is_drawn_generically(order: str) -> None:
    """A kind this module does not know is drawn by class name and its conv children, in the
    block's forward order (its branch(), or its children)."""
    from modernize.views.diagram import _block_part

    part = _block_part("block", _UserBlock(order))
    assert [la.label for la in part.layers] == ["dw conv 7x7, 192 ch +b",
                                                "SqueezeExcitation: 1x1 192→48 +b, 1x1 48→192 +b", "Hardswish"]
    assert [la.kind for la in part.layers] == ["conv", "other", "act"] and part.shortcut == ()
    plain = layer_of("x", nn.Conv3d(4, 8, 3, stride=2))  # not a Conv2d: the generic path
    assert plain.label == "Conv3d 3x3 /2 4→8" and plain.kind == "other"
    class ResponseNorm(nn.Module):  # parameters only, no conv attributes: its channels from them
        def __init__(self) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.zeros(1, 1, 1, 768))

    assert layer_of("g", ResponseNorm()).label == "ResponseNorm 768 ch"
    assert layer_of("g", ResponseNorm()).kind == "norm"
    group = layer_of("n", nn.GroupNorm(8, 96))
    assert group.label == "GroupNorm 96 ch 8 groups" and group.kind == "norm"


def test_matching_by_name_type_and_shape() -> None:
    old = side_of(R50["widen"].spec)
    assert all(not la.status for p in compare(old, old).after.parts.values() for la in p.all_layers)
    comp = compare(side_of(R50["depthwise"].spec), old)  # widen: every width changes
    assert set(marks("widen")) >= {"conv_pw1", "conv_dw", "conv_pw2", "shortcut.conv"}
    assert "act_pw1" not in marks("widen") and comp.shown == ("stem", "block", "head")


def test_svg_and_png_from_python(tmp_path: Path) -> None:
    svg = save_step_diagram(R50, "depthwise", tmp_path / "d.svg")
    root = ET.parse(svg).getroot()
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "dw conv 3x3 /2, 128 ch" in text and "changed" in text and "before: patchify_stem" in text
    png = save_step_diagram(R50, "depthwise", tmp_path / "d.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    again, alt = step_diagram(R50, "depthwise", look=SLIDE)  # what save writes: slide-ready
    assert again == svg.read_bytes()  # deterministic bytes
    assert alt.startswith("Block diagram of step depthwise.") and "dw conv 3x3 /2, 128 ch (changed)" in alt
    before, before_alt = step_diagram(R50, "depthwise", only="before")  # the page's halves
    after, after_alt = step_diagram(R50, "depthwise", only="after")
    assert b"before: patchify_stem" in before and b"after: depthwise" not in before and b"thick orange" not in before
    assert b"after: depthwise" in after and b"before: patchify_stem" not in after
    assert before_alt.startswith("Before step depthwise (patchify_stem): ") and "(replaced)" in before_alt
    assert after_alt.startswith("After step depthwise: ") and "dw conv 3x3 /2, 128 ch (changed)" in after_alt


def test_describe_figure_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--step", "gelu", "--figure", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["describe", "--step", "gelu", "--step", "kernel_7", "--figure", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["gelu.svg", "kernel_7.svg"]
    capsys.readouterr()
    for argv, message in ((["--figure", str(tmp_path / "x.svg")], "one file holds one step"),
                          (["--step", "gelu", "--figure", str(tmp_path / "x.pdf")], "ending in .svg or .png"),
                          (["--step", "nope", "--figure", str(tmp_path / "d")], "unknown step")):
        assert main(["describe", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.svg").exists() and not (tmp_path / "d").exists()


def test_user_step_with_a_user_transform(tmp_path: Path) -> None:
    """A step of a user roadmap, made by a user transform (docs/examples): drawn like a built-in."""
    for name in ("user_roadmap.toml", "user_transforms.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    roadmap = load_roadmap(tmp_path / "user_roadmap.toml")
    comp = step_comparison(roadmap, "mlp_ratio_3")
    assert {la.name: la.label for la in comp.changed} == {"conv_pw1": "conv 1x1 (linear), 192→576 +b",
                                                          "conv_pw2": "conv 1x1 (linear), 576→192 +b"}
    assert "unchanged downsampling" in comp.after.parts["block"].title
    svg, _ = step_diagram(roadmap, "mlp_ratio_3")
    assert b"convnext_t_variations, step 2/3: mlp_ratio_3" in svg


def test_figure4_first_and_last_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The paper's Figure 4 counterpart, paper scale: ResNet-50's block beside ConvNeXt-T's."""
    assert main(["describe", "--figure4", str(tmp_path / "f4.svg")]) == 0
    text = (tmp_path / "f4.svg").read_text()
    assert "Figure 4" in text and "paper scale" in text and "resnet50" in text and "separate_downsampling" in text
    assert "dw conv 7x7, 192 ch" in text and "conv 3x3 /2, 128→128" in text  # the paper's widths, not a proxy's
    capsys.readouterr()
    assert main(["describe", "--figure4", str(tmp_path / "f4.pdf")]) == 2
    assert "--figure4" in capsys.readouterr().err and not (tmp_path / "f4.pdf").exists()


# --- slide-ready and two-scale figures ------------------------------------------------------------

SHOWN_PX = 356  # a figure box on a 390 px phone (the page's margins take 34 px); about half a slide


def smallest_text_px(fig: object) -> float:
    """The smallest font of any drawn text, in px, when the figure is shown ``SHOWN_PX`` wide:
    points are 1/72 inch of a figure ``get_figwidth()`` inches wide."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert sizes, "a figure with no text"
    return min(sizes) * SHOWN_PX / (fig.get_figwidth() * 72)


def figures_to_measure() -> dict[str, object]:
    from modernize.proxy import PROXIES
    from modernize.views.diagram import compare, side_of
    from modernize.views.diagram_draw import render, step_figure, step_scales_figure

    first, last = R50[0], [s for s in R50 if s.adopted][-1]
    f4 = compare(side_of(first.spec, 224, first.name), side_of(last.spec, 224, last.name))
    return {"step figure": step_figure(R50, "separate_downsampling"),
            "two-scale figure": step_scales_figure(R50, "inverted_bottleneck", PROXIES["fidelity32"]),
            "figure4": render(f4, "Figure 4", "paper scale", look=SLIDE)}


def test_figure_text_reads_at_390_px() -> None:
    import matplotlib.pyplot as plt

    for name, fig in figures_to_measure().items():
        try:
            assert smallest_text_px(fig) >= 10, f"{name}: {smallest_text_px(fig):.1f} px at {SHOWN_PX} px wide"
        finally:
            plt.close(fig)


def test_slide_exports_are_one_panel_wide(tmp_path: Path) -> None:
    """`describe --figure` and `--figure4` write the slide look: the two sides one under the
    other, so the file is one panel wide and about twice as tall as wide."""
    import matplotlib.image as mpimg

    assert main(["describe", "--step", "widen", "--figure", str(tmp_path / "w.png")]) == 0
    assert main(["describe", "--figure4", str(tmp_path / "f4.png")]) == 0
    for name in ("w.png", "f4.png"):
        h, w = mpimg.imread(tmp_path / name).shape[:2]
        assert h > 1.8 * w, (name, w, h)


def panel_texts(fig: object) -> tuple[str, str, list[str], list[str]]:
    """The two panel headings, and the texts drawn in the upper and the lower panel."""
    from matplotlib.text import Text

    texts = [t for t in fig.findobj(Text) if t.get_text().strip()]
    heads = [t for t in texts if t.get_text().startswith(("paper scale:", "trained here:"))]
    assert len(heads) == 2, [t.get_text() for t in heads]
    split = heads[1].get_position()[1]  # y grows downwards: the lower panel starts at its heading
    upper = [t.get_text() for t in texts if heads[0].get_position()[1] < t.get_position()[1] < split]
    lower = [t.get_text() for t in texts if t.get_position()[1] > split]
    return heads[0].get_text(), heads[1].get_text(), upper, lower


@pytest.mark.parametrize("step", ["widen", "inverted_bottleneck", "patchify_stem"])
def test_two_scales_paper_above_proxy(step: str) -> None:
    import matplotlib.pyplot as plt

    from modernize.proxy import PROXIES
    from modernize.views.diagram_draw import step_scales_figure

    proxy = PROXIES["fidelity32"]
    fig = step_scales_figure(R50, step, proxy)
    try:
        paper_head, proxy_head, upper, lower = panel_texts(fig)
    finally:
        plt.close(fig)
    assert "paper scale" in paper_head and "224 px" in paper_head
    assert "trained here: proxy fidelity32" in proxy_head.replace("\n", " ") and "x0.25" in proxy_head
    paper, small = R50[step].spec, proxy.apply(R50[step].spec)
    assert paper.dims[1] != small.dims[1]  # what the panels must show apart
    for texts, spec in ((upper, paper), (lower, small)):
        joined = " ".join(texts).replace("\n", " ")
        assert f"widths {'-'.join(map(str, spec.dims))}" in joined, joined
        assert f"out {spec.dims[1]}×" in joined  # stage 2's first block ends at the stage's width


def test_widen_stem_channels_under_fidelity32() -> None:
    """The brief's example: widen's stem is 96 channels in the paper, 24 under fidelity32."""
    import matplotlib.pyplot as plt

    from modernize.proxy import PROXIES
    from modernize.views.diagram_draw import step_scales_figure

    fig = step_scales_figure(R50, "widen", PROXIES["fidelity32"])
    try:
        _, _, upper, lower = panel_texts(fig)
    finally:
        plt.close(fig)
    assert any("3→96" in t for t in upper) and not any("3→96" in t for t in lower)
    assert any("3→24" in t for t in lower) and not any("3→24" in t for t in upper)


def test_describe_figure_with_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "--step", "widen", "--figure", str(tmp_path / "w.svg"), "--proxy", "fidelity32"]) == 0
    root = ET.parse(tmp_path / "w.svg").getroot()
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "paper scale" in text and "trained here: proxy fidelity32" in text
    assert "3→96" in text and "3→24" in text
    assert main(["describe", "--step", "widen", "--figure", str(tmp_path / "x.svg"), "--proxy", "tiny"]) == 2
    assert "fidelity32" in capsys.readouterr().err and not (tmp_path / "x.svg").exists()
    assert main(["describe", "--step", "widen", "--proxy", "fidelity32"]) == 2
    assert "--figure" in capsys.readouterr().err
