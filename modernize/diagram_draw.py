"""Drawing the block diagrams of :mod:`modernize.diagram` with matplotlib, and the Python entry
points: :func:`step_figure` (a figure), :func:`save_step_diagram` (SVG or PNG by suffix) and
:func:`alt_text` (the same content in words, for a page's ``alt``).

The layout is fixed, in inches: before on the left, after on the right; the parts one under
the other (stem, downsampling, block, head), aligned across the two sides; inside a block the
branch runs down the middle column and the residual path down the right one into the add.
A changed layer has a thick orange outline and a word beside it (colour is never the only cue).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from .diagram import Comparison, Layer, Part, Side, compare, side_of
from .errors import ConfigError
from .files import atomic_write_bytes
from .roadmap import Roadmap
from .spec import ArchSpec

DPI = 120
PANEL_W, TAG_X, MAIN_X0, MAIN_W, SC_X, SC_W = 5.7, 0.95, 1.0, 2.75, 4.75, 1.8
BOX_H, GAP, ROW = 0.3, 0.17, 0.47
FILL = {"conv": "#dbe7f6", "norm": "#dcefd8", "act": "#fff1bf", "pool": "#ececec", "other": "#eadcf3"}
KIND_NAMES = {"conv": "conv / linear", "norm": "norm", "act": "activation", "pool": "pooling",
              "other": "other (layer scale, new kinds)"}
CHANGED, REMOVED, INK = "#b4400a", "#5b6270", "#111111"
FORMATS = ("svg", "png")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "modernize"  # stable SVG ids: reruns give the same file
    import matplotlib.pyplot as plt

    return plt


def _rows(part: Part) -> int:
    """Rows of boxes a part needs (a block: its branch or shortcut, the add, what follows)."""
    if part.shortcut is None:
        return max(1, len(part.layers))
    return max(len(part.layers), len(part.shortcut)) + 1 + len(part.after_add)


def _part_height(parts: list[Part | None]) -> float:
    return 0.62 + max(_rows(p) if p is not None else 1 for p in parts) * ROW + 0.3


def _box(ax: Any, x: float, y: float, w: float, layer: Layer, after: bool, fs: float = 8.5,
         side_path: bool = False) -> None:
    from matplotlib.patches import FancyBboxPatch

    changed = bool(layer.status)
    edge = (CHANGED if after else REMOVED) if changed else "#444444"
    ax.add_patch(FancyBboxPatch((x, y), w, BOX_H, boxstyle="round,pad=0,rounding_size=0.05",
                                fc=FILL.get(layer.kind, FILL["other"]), ec=edge, lw=2.4 if changed else 0.8,
                                ls="--" if changed and not after else "-", alpha=0.55 if changed and not after else 1))
    text = layer.label
    size = fs
    while len(text) * size * 0.0085 > w - 0.1 and size > 6.5:
        size -= 0.5
    if len(text) * size * 0.0085 > w - 0.1:
        text = "\n".join(textwrap.wrap(text, max(8, int((w - 0.1) / (size * 0.0085))))[:2])
        size = min(size, 6.5)
    ax.text(x + w / 2, y + BOX_H / 2, text, ha="center", va="center", fontsize=size, color=INK)
    if changed and side_path:  # the main column is to the left: the word goes above the box
        ax.text(x + w / 2, y - 0.02, layer.status, ha="center", va="bottom", fontsize=7,
                color=CHANGED if after else REMOVED, fontweight="bold")
    elif changed:
        ax.text(x - 0.07, y + BOX_H / 2, layer.status.replace(", ", ",\n"), ha="right", va="center",
                fontsize=7, color=CHANGED if after else REMOVED, fontweight="bold")


def _arrow(ax: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", color="#333333", lw=0.9,
                                                         shrinkA=0, shrinkB=0, mutation_scale=8))


def _draw_part(ax: Any, x0: float, y: float, part: Part | None, after: bool) -> None:
    """Title, input shape, boxes (and the residual path of a block), output shape."""
    if part is None or not part.layers:
        title = part.title if part is not None else ""
        ax.text(x0 + MAIN_X0, y + 0.22, title, fontsize=9.5, fontweight="bold", color=INK, va="center")
        ax.text(x0 + MAIN_X0 + MAIN_W / 2, y + 0.75, "(none)", fontsize=8.5, style="italic", color=REMOVED,
                ha="center", va="center")
        return
    cx = x0 + MAIN_X0 + MAIN_W / 2
    ax.text(x0 + MAIN_X0, y + 0.2, part.title, fontsize=9.5, fontweight="bold", color=INK, va="center")
    top = y + 0.62
    if part.shape_in:
        ax.text(cx - 0.08, top - 0.17, f"in {part.shape_in}", fontsize=7.5, color="#333333", va="center", ha="right")
    _arrow(ax, cx, top - 0.3, cx, top)
    row_y = top
    for k, layer in enumerate(part.layers):
        _box(ax, x0 + MAIN_X0, row_y, MAIN_W, layer, after)
        row_y += ROW
        if k + 1 < len(part.layers):
            _arrow(ax, cx, row_y - GAP, cx, row_y)
    if part.shortcut is not None:
        row_y = top + max(len(part.layers), len(part.shortcut)) * ROW
        add_y = row_y + BOX_H / 2 - 0.05
        _arrow(ax, cx, row_y - GAP, cx, add_y - 0.13)
        ax.add_patch(_circle((cx, add_y), 0.13))
        ax.text(cx, add_y, "+", ha="center", va="center", fontsize=11, color=INK)
        sx = x0 + SC_X
        join = top - 0.22
        ax.plot([cx, sx, sx], [join, join, add_y], color="#333333", lw=0.9)
        _arrow(ax, sx, add_y, cx + 0.13, add_y)
        if not part.shortcut:
            ax.text(sx + 0.07, (join + add_y) / 2, "identity\nshortcut", fontsize=7.5, color="#333333",
                    va="center")
        for k, layer in enumerate(part.shortcut):
            _box(ax, sx - SC_W / 2, top + (k + 0.5) * ROW, SC_W, layer, after, fs=7.5, side_path=True)
        row_y = add_y + 0.13 + GAP
        if part.after_add:
            _arrow(ax, cx, add_y + 0.13, cx, row_y)
        for layer in part.after_add:
            _box(ax, x0 + MAIN_X0, row_y, MAIN_W, layer, after)
            row_y += ROW
        row_y -= GAP if part.after_add else 0
        _arrow(ax, cx, row_y - (0 if part.after_add else GAP), cx, row_y + 0.22)
    else:
        row_y -= GAP
        _arrow(ax, cx, row_y, cx, row_y + 0.22)
    if part.shape_out:
        ax.text(cx + 0.08, row_y + 0.14, f"out {part.shape_out}", fontsize=7.5, color="#333333", va="center")


def _circle(xy: tuple[float, float], r: float) -> Any:
    from matplotlib.patches import Circle

    return Circle(xy, r, fc="white", ec="#333333", lw=1.0)


def render(comp: Comparison, title: str, subtitle: str, only: str | None = None) -> Any:
    """The figure of one comparison (one side when there is no ``before``). ``only`` ('before'
    or 'after') draws that side alone, without title and legend, at the height of the pair: a
    page shows the two halves side by side on a wide screen and one under the other on a phone."""
    plt = _pyplot()
    sides: list[tuple[Side, bool]] = ([(comp.before, False)] if comp.before is not None else []) + [(comp.after, True)]
    heights = [_part_height([s.parts.get(p) for s, _ in sides]) for p in comp.shown]
    if only is not None:
        sides = [(s, after) for s, after in sides if after == (only == "after")]
    top, bottom = (1.35, 0.75) if only is None else (0.55, 0.1)
    width = PANEL_W * len(sides) + 0.3
    height = top + sum(heights) + bottom
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    if only is None:
        ax.text(0.2, 0.28, title, fontsize=11.5, fontweight="bold", color=INK, va="center")
        ax.text(0.2, 0.58, subtitle, fontsize=8.5, color="#333333", va="center")
    stages_changed = comp.before is not None and comp.before.stages != comp.after.stages
    for k, (side, after) in enumerate(sides):
        x0 = 0.15 + k * PANEL_W
        head = ("after: " if after else "before: ") + side.name if comp.before is not None else side.name
        ax.text(x0 + MAIN_X0, top - 0.43, head, fontsize=10.5, fontweight="bold", va="center",
                color=CHANGED if after and comp.before is not None else INK)
        mark = stages_changed and after
        ax.text(x0 + MAIN_X0, top - 0.18, side.stages_text, fontsize=7.5, va="center",
                color=CHANGED if mark else "#333333", fontweight="bold" if mark else "normal")
        if mark:
            ax.text(x0 + MAIN_X0 - 0.07, top - 0.18, "changed", fontsize=7, ha="right", va="center", color=CHANGED,
                    fontweight="bold")
        y = top
        for name, h in zip(comp.shown, heights):
            _draw_part(ax, x0, y, side.parts.get(name), after)
            y += h
    if only is None:
        if comp.before is not None:
            ax.plot([PANEL_W + 0.15] * 2, [0.8, height - 0.7], color="#bbbbbb", lw=0.8)
        _legend(ax, height, comp.before is not None)
    return fig


def _legend(ax: Any, height: float, compared: bool) -> None:
    from matplotlib.patches import Rectangle

    x, y = 0.25, height - 0.45
    for kind, fill in FILL.items():
        ax.add_patch(Rectangle((x, y - 0.08), 0.22, 0.16, fc=fill, ec="#444444", lw=0.6))
        ax.text(x + 0.28, y, KIND_NAMES[kind], fontsize=7.5, va="center", color=INK)
        x += 0.5 + 0.062 * len(KIND_NAMES[kind])
    if compared:
        ax.text(0.25, height - 0.18, "thick orange outline = new, changed or moved by this step (after); "
                "dashed grey = removed or replaced (before). Layers matched by module name, type and shape.",
                fontsize=7.5, va="center", color=INK)


def alt_text(comp: Comparison, step: str, only: str | None = None) -> str:
    """The diagram in words: what a screen reader says instead of the picture (``only``: the
    half of :func:`render` with that side)."""
    def names(side: Side) -> str:
        return "; ".join(f"{side.parts[p].title}: " + (", ".join(la.label + (f" ({la.status})" if la.status else "")
                                                                  for la in side.parts[p].all_layers) or "none")
                         for p in comp.shown)
    if comp.before is None:
        return f"Block diagram of step {step}. " + names(comp.after) + "."
    if only == "before":
        return f"Before step {step} ({comp.before.name}): {names(comp.before)}."
    if only == "after":
        return f"After step {step}: {names(comp.after)}."
    changed = [f"{la.label} ({la.status})" for la in comp.changed] + [f"{la.label} (removed)" for la in comp.removed]
    summary = "Changed: " + ", ".join(changed) if changed else "No drawn layer changed"
    return (f"Block diagram of step {step}. Before ({comp.before.name}): {names(comp.before)}. After: "
            f"{names(comp.after)}. {summary}.")


SpecOf = Callable[[str], ArchSpec]


def step_comparison(roadmap: Roadmap, step: str, *, spec_of: SpecOf | None = None,
                    resolution: int = 224) -> Comparison:
    """Before (the step's parent) and after of a step; ``spec_of(name)`` gives the spec to draw
    (default: the roadmap's paper-scale spec; a run page passes the spec it trained)."""
    if step not in roadmap.names:
        raise ConfigError(f"step '{step}' is not in roadmap '{roadmap.name}' (valid: {', '.join(roadmap.names)})")
    spec_of = spec_of or (lambda name: roadmap[name].spec)
    s = roadmap[step]
    old = side_of(spec_of(s.parent), resolution, s.parent) if s.parent else None
    return compare(old, side_of(spec_of(step), resolution, step))


def _titles(roadmap: Roadmap, step: str, resolution: int, scale: str) -> tuple[str, str]:
    s = roadmap[step]
    index = roadmap.names.index(step) + 1
    branch = "" if s.adopted else " (explored branch)"
    return (f"{roadmap.name}, step {index}/{len(roadmap)}: {step}{branch}",
            textwrap.shorten(f"{s.change} · {scale}, {resolution} px input · stage 2's first block", 150))


def step_figure(roadmap: Roadmap, step: str, *, spec_of: SpecOf | None = None, resolution: int = 224,
                scale: str = "paper scale") -> Any:
    """The matplotlib figure of one step (close it with ``plt.close``)."""
    comp = step_comparison(roadmap, step, spec_of=spec_of, resolution=resolution)
    return render(comp, *_titles(roadmap, step, resolution, scale))


@lru_cache(maxsize=256)
def _rendered(title: str, subtitle: str, old: tuple[str, ArchSpec] | None, new: tuple[str, ArchSpec],
              resolution: int, fmt: str, only: str | None) -> tuple[bytes, str]:
    comp = compare(side_of(old[1], resolution, old[0]) if old else None, side_of(new[1], resolution, new[0]))
    plt = _pyplot()
    fig = render(comp, title, subtitle, only)
    try:
        return figure_bytes(fig, fmt), alt_text(comp, new[0], only)
    finally:
        plt.close(fig)


def step_diagram(roadmap: Roadmap, step: str, *, spec_of: SpecOf | None = None, resolution: int = 224,
                 scale: str = "paper scale", fmt: str = "svg", only: str | None = None) -> tuple[bytes, str]:
    """One step's diagram as file bytes (``fmt`` svg or png) and its alt text (``only``: one
    side, see :func:`render`); the same specs give the same bytes from a cache."""
    if step not in roadmap.names:
        raise ConfigError(f"step '{step}' is not in roadmap '{roadmap.name}' (valid: {', '.join(roadmap.names)})")
    spec_of = spec_of or (lambda name: roadmap[name].spec)
    parent = roadmap[step].parent
    return _rendered(*_titles(roadmap, step, resolution, scale), (parent, spec_of(parent)) if parent else None,
                     (step, spec_of(step)), resolution, fmt, only)


def figure_bytes(fig: Any, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ConfigError(f"figure format '{fmt}' is not supported (valid: {', '.join(FORMATS)})")
    import matplotlib

    buf = io.BytesIO()
    # SVG text stays text (a quarter of the size of glyph paths, selectable, read by screen readers).
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata={"Software": None} if fmt == "png" else {"Date": None})
    return buf.getvalue()


def save_step_diagram(roadmap: Roadmap, step: str, path: Path, **kwargs: Any) -> Path:
    """Write one step's diagram; the format is the suffix of ``path`` (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--figure {path}: the file name must end in .svg or .png")
    atomic_write_bytes(path, step_diagram(roadmap, step, fmt=fmt, **kwargs)[0])
    return path


def figure4(roadmap: Roadmap, *, resolution: int = 224, fmt: str = "svg") -> tuple[bytes, str]:
    """The paper's Figure 4 counterpart: the roadmap's first block (ResNet-50's) beside its last
    adopted step's (ConvNeXt-T's), at the roadmap's (paper) scale, as file bytes and alt text."""
    first, last = roadmap[0], [s for s in roadmap if s.adopted][-1]
    title = f"{roadmap.name}: the first and the last block (the paper's Figure 4)"
    subtitle = (f"paper scale (what the paper describes), {resolution} px input · stage 2's first block · "
                f"left: {first.name}, right: {last.name}")
    return _rendered(title, subtitle, (first.name, first.spec), (last.name, last.spec), resolution, fmt, None)


def save_figure4(roadmap: Roadmap, path: Path, *, resolution: int = 224) -> Path:
    """Write :func:`figure4`; the format is the suffix of ``path`` (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--figure4 {path}: the file name must end in .svg or .png")
    atomic_write_bytes(path, figure4(roadmap, resolution=resolution, fmt=fmt)[0])
    return path


__all__ = ["alt_text", "figure4", "figure_bytes", "render", "save_figure4", "save_step_diagram", "step_comparison",
           "step_diagram", "step_figure"]
