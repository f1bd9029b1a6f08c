"""Drawing the block diagrams of :mod:`modernize.views.diagram` with matplotlib, and the Python entry
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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import atomic_write_bytes
from ..proxy import ProxyScale, proxy_label
from ..roadmap import Roadmap
from ..spec import ArchSpec
from .diagram import Comparison, Layer, Part, Side, compare, side_of

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


@dataclass(frozen=True)
class Look:
    """How big the text is against the layout, and where the panels go. ``k`` multiplies every
    font size and every height (widths stay), so a figure shown at a given width gets text ``k``
    times larger; ``stacked`` puts the panels one under the other, so the figure is one panel
    wide: a slide or a phone shows it at a width where the text still reads."""

    k: float = 1.0
    stacked: bool = False


PAGE = Look()
SLIDE = Look(k=1.95, stacked=True)
"""Text at least 10 px when the figure is shown 356 px wide (its box on a 390 px phone, half a slide)."""
CHAR_W = 0.0085
"""Width of an average character, in inches per point of font size."""


def _rows(part: Part) -> int:
    """Rows of boxes a part needs (a block: its branch or shortcut, the add, what follows)."""
    if part.shortcut is None:
        return max(1, len(part.layers))
    return max(len(part.layers), len(part.shortcut)) + 1 + len(part.after_add)


def _part_height(parts: list[Part | None], k: float) -> float:
    return (0.62 + max(_rows(p) if p is not None else 1 for p in parts) * ROW + 0.3) * k


def _wrap(text: str, width: float, size: float) -> str:
    """``text`` in lines that fit ``width`` inches at ``size`` points, broken at its " · "
    separators first (a scale or an input size stays on one line)."""
    chars = max(12, int(width / (size * CHAR_W)))
    lines: list[str] = []
    for piece in text.split(" · "):
        if lines and len(lines[-1]) + 3 + len(piece) <= chars:
            lines[-1] += " · " + piece
        else:
            lines.extend(textwrap.wrap(piece, chars) or [piece])
    return "\n".join(lines)


def _box(ax: Any, x: float, y: float, w: float, layer: Layer, after: bool, k: float, fs: float = 8.5,
         side_path: bool = False) -> None:
    from matplotlib.patches import FancyBboxPatch

    changed = bool(layer.status)
    edge = (CHANGED if after else REMOVED) if changed else "#444444"
    ax.add_patch(FancyBboxPatch((x, y), w, BOX_H * k, boxstyle="round,pad=0,rounding_size=0.05",
                                fc=FILL.get(layer.kind, FILL["other"]), ec=edge, lw=2.4 if changed else 0.8,
                                ls="--" if changed and not after else "-", alpha=0.55 if changed and not after else 1))
    text, size, floor = layer.label, fs * k, 6.5 * k
    while len(text) * size * CHAR_W > w - 0.1 and size > floor:
        size -= 0.5
    if len(text) * size * CHAR_W > w - 0.1:
        text = "\n".join(textwrap.wrap(text, max(8, int((w - 0.1) / (floor * CHAR_W))))[:2])
        size = min(size, floor)
    ax.text(x + w / 2, y + BOX_H * k / 2, text, ha="center", va="center", fontsize=size, color=INK)
    if changed and side_path:  # the main column is to the left: the word goes above the box
        ax.text(x + w / 2, y - 0.02 * k, layer.status, ha="center", va="bottom", fontsize=7 * k,
                color=CHANGED if after else REMOVED, fontweight="bold")
    elif changed:
        ax.text(x - 0.07, y + BOX_H * k / 2, layer.status.replace(", ", ",\n"), ha="right", va="center",
                fontsize=7 * k, color=CHANGED if after else REMOVED, fontweight="bold")


def _arrow(ax: Any, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", color="#333333", lw=0.9,
                                                         shrinkA=0, shrinkB=0, mutation_scale=8))


def _draw_part(ax: Any, x0: float, y: float, part: Part | None, after: bool, k: float) -> None:
    """Title, input shape, boxes (and the residual path of a block), output shape."""
    row, gap = ROW * k, GAP * k
    if part is None or not part.layers:
        title = part.title if part is not None else ""
        ax.text(x0 + MAIN_X0, y + 0.22 * k, title, fontsize=9.5 * k, fontweight="bold", color=INK, va="center")
        ax.text(x0 + MAIN_X0 + MAIN_W / 2, y + 0.75 * k, "(none)", fontsize=8.5 * k, style="italic", color=REMOVED,
                ha="center", va="center")
        return
    cx = x0 + MAIN_X0 + MAIN_W / 2
    ax.text(x0 + MAIN_X0, y + 0.2 * k, _wrap(part.title, PANEL_W - MAIN_X0, 9.5 * k), fontsize=9.5 * k,
            fontweight="bold", color=INK, va="center")
    top = y + 0.62 * k
    if part.shape_in:
        ax.text(cx - 0.08, top - 0.17 * k, f"in {part.shape_in}", fontsize=7.5 * k, color="#333333", va="center",
                ha="right")
    _arrow(ax, cx, top - 0.3 * k, cx, top)
    row_y = top
    for j, layer in enumerate(part.layers):
        _box(ax, x0 + MAIN_X0, row_y, MAIN_W, layer, after, k)
        row_y += row
        if j + 1 < len(part.layers):
            _arrow(ax, cx, row_y - gap, cx, row_y)
    if part.shortcut is not None:
        row_y = top + max(len(part.layers), len(part.shortcut)) * row
        r = 0.13 * k
        add_y = row_y + BOX_H * k / 2 - 0.05 * k
        _arrow(ax, cx, row_y - gap, cx, add_y - r)
        ax.add_patch(_circle((cx, add_y), r))
        ax.text(cx, add_y, "+", ha="center", va="center", fontsize=11 * k, color=INK)
        sx = x0 + SC_X
        join = top - 0.22 * k
        ax.plot([cx, sx, sx], [join, join, add_y], color="#333333", lw=0.9, zorder=0.5)  # under the boxes
        _arrow(ax, sx, add_y, cx + r, add_y)
        if not part.shortcut:
            ax.text(sx + 0.07, (join + add_y) / 2, "identity\nshortcut", fontsize=7.5 * k, color="#333333",
                    va="center")
        for j, layer in enumerate(part.shortcut):
            _box(ax, sx - SC_W / 2, top + (j + 0.5) * row, SC_W, layer, after, k, fs=7.5, side_path=True)
        row_y = add_y + r + gap
        if part.after_add:
            _arrow(ax, cx, add_y + r, cx, row_y)
        for layer in part.after_add:
            _box(ax, x0 + MAIN_X0, row_y, MAIN_W, layer, after, k)
            row_y += row
        row_y -= gap if part.after_add else 0
        _arrow(ax, cx, row_y - (0 if part.after_add else gap), cx, row_y + 0.22 * k)
    else:
        row_y -= gap
        _arrow(ax, cx, row_y, cx, row_y + 0.22 * k)
    if part.shape_out:
        ax.text(cx + 0.08, row_y + 0.14 * k, f"out {part.shape_out}", fontsize=7.5 * k, color="#333333",
                va="center")


def _circle(xy: tuple[float, float], r: float) -> Any:
    from matplotlib.patches import Circle

    return Circle(xy, r, fc="white", ec="#333333", lw=1.0)


@dataclass(frozen=True)
class Panel:
    """One drawn network: its side, whether it is an after side (marks in orange), its heading."""

    side: Side
    after: bool
    head: str
    accent: bool = False
    changed_stages: bool = False


def render(comp: Comparison, title: str, subtitle: str, only: str | None = None, look: Look = PAGE) -> Any:
    """The figure of one comparison (one side when there is no ``before``). ``only`` ('before'
    or 'after') draws that side alone, without title and legend, at the height of the pair: a
    page shows the two halves side by side on a wide screen and one under the other on a phone."""
    compared = comp.before is not None
    stages_changed = compared and comp.before.stages != comp.after.stages  # type: ignore[union-attr]
    panels = ([Panel(comp.before, False, "before: " + comp.before.name)] if comp.before is not None else []) + [
        Panel(comp.after, True, ("after: " if compared else "") + comp.after.name, compared, stages_changed)]
    heights = [_part_height([pa.side.parts.get(p) for pa in panels], look.k) for p in comp.shown]
    if only is not None:
        panels = [pa for pa in panels if pa.after == (only == "after")]
    return draw_panels(panels, comp.shown, heights, (title, subtitle) if only is None else None, look, compared)


def _head_lines(panel: Panel, k: float) -> tuple[str, str]:
    return (_wrap(panel.head, PANEL_W - MAIN_X0, 10.5 * k), _wrap(panel.side.stages_text, PANEL_W - MAIN_X0, 7.5 * k))


def _tall(text: str, size: float) -> float:
    """Height in inches of ``text``'s lines at ``size`` points."""
    return (text.count("\n") + 1) * size * 1.25 / 72


def draw_panels(panels: list[Panel], shown: tuple[str, ...], heights: list[float],
                titles: tuple[str, str] | None, look: Look, compared: bool) -> Any:
    """Panels side by side (or stacked, per ``look``), with a title and a legend when ``titles``."""
    plt, k = _pyplot(), look.k
    width = PANEL_W * (1 if look.stacked else len(panels)) + 0.3
    heads = [_head_lines(pa, k) for pa in panels]
    head_hs = [_tall(h, 10.5 * k) + _tall(s, 7.5 * k) + 0.2 * k for h, s in heads]
    if not look.stacked:  # side by side: the parts start at one height
        head_hs = [max(head_hs)] * len(heads)
    starts = [sum(head_hs[:i]) + i * sum(heights) if look.stacked else 0.0 for i in range(len(panels))]
    title = subtitle = ""
    top = sub_y = 0.1 * k
    if titles is not None:
        title, subtitle = _wrap(titles[0], width - 0.4, 11.5 * k), _wrap(titles[1], width - 0.4, 8.5 * k)
        sub_y = 0.1 * k + _tall(title, 11.5 * k) + 0.06 * k
        top = sub_y + _tall(subtitle, 8.5 * k) + 0.2 * k
    body = (sum(head_hs) if look.stacked else head_hs[0]) + sum(heights) * (len(panels) if look.stacked else 1)
    legend_h = 0.0 if titles is None else _legend(None, width, 0.0, compared, k)
    height = top + body + legend_h + 0.1
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    if titles is not None:
        ax.text(0.2, 0.1 * k, title, fontsize=11.5 * k, fontweight="bold", color=INK, va="top")
        ax.text(0.2, sub_y, subtitle, fontsize=8.5 * k, color="#333333", va="top")
    for i, (pa, (head, stages)) in enumerate(zip(panels, heads)):
        x0 = 0.15 + (0 if look.stacked else i * PANEL_W)
        y = top + starts[i]
        ax.text(x0 + MAIN_X0, y + 0.05 * k, head, fontsize=10.5 * k, fontweight="bold", va="top",
                color=CHANGED if pa.accent else INK)
        stages_y = y + 0.09 * k + _tall(head, 10.5 * k)
        ax.text(x0 + MAIN_X0, stages_y, stages, fontsize=7.5 * k, va="top",
                color=CHANGED if pa.changed_stages else "#333333", fontweight="bold" if pa.changed_stages else "normal")
        if pa.changed_stages:
            ax.text(x0 + MAIN_X0 - 0.07, stages_y, "changed", fontsize=7 * k, ha="right", va="top",
                    color=CHANGED, fontweight="bold")
        y += head_hs[i]
        for name, h in zip(shown, heights):
            _draw_part(ax, x0, y, pa.side.parts.get(name), pa.after, k)
            y += h
        if i and titles is not None:  # a rule between two panels
            xs, ys = ([0.2, width - 0.2], [top + starts[i]] * 2) if look.stacked else \
                ([x0] * 2, [top, top + body])
            ax.plot(xs, ys, color="#bbbbbb", lw=0.8)
    if titles is not None:
        _legend(ax, width, height - legend_h, compared, k)
    return fig


def _legend(ax: Any | None, width: float, y0: float, compared: bool, k: float) -> float:
    """The colour key (and the outline key when ``compared``) from ``y0`` down, wrapped to
    ``width``; returns its height (``ax`` None: measure only)."""
    from matplotlib.patches import Rectangle

    x, y, line = 0.25, y0 + 0.2 * k, 0.3 * k
    for kind, fill in FILL.items():
        step = 0.5 * k + 0.062 * k * len(KIND_NAMES[kind])
        if x + step > width and x > 0.25:
            x, y = 0.25, y + line
        if ax is not None:
            ax.add_patch(Rectangle((x, y - 0.08 * k), 0.22 * k, 0.16 * k, fc=fill, ec="#444444", lw=0.6))
            ax.text(x + 0.28 * k, y, KIND_NAMES[kind], fontsize=7.5 * k, va="center", color=INK)
        x += step
    y += 0.2 * k
    if compared:
        note = _wrap("thick orange outline = new, changed or moved by this step (after); dashed grey = removed "
                     "or replaced (before). Layers matched by module name, type and shape.", width - 0.5, 7.5 * k)
        if ax is not None:
            ax.text(0.25, y, note, fontsize=7.5 * k, va="top", color=INK)
        y += (note.count("\n") + 1) * 7.5 * 1.3 * k / 72
    return y - y0 + 0.1 * k


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
                scale: str = "paper scale", look: Look = SLIDE) -> Any:
    """The matplotlib figure of one step, slide-ready by default (close it with ``plt.close``)."""
    comp = step_comparison(roadmap, step, spec_of=spec_of, resolution=resolution)
    return render(comp, *_titles(roadmap, step, resolution, scale), look=look)


@lru_cache(maxsize=256)
def _rendered(title: str, subtitle: str, old: tuple[str, ArchSpec] | None, new: tuple[str, ArchSpec],
              resolution: int, fmt: str, only: str | None, look: Look = PAGE) -> tuple[bytes, str]:
    comp = compare(side_of(old[1], resolution, old[0]) if old else None, side_of(new[1], resolution, new[0]))
    plt = _pyplot()
    fig = render(comp, title, subtitle, only, look)
    try:
        return figure_bytes(fig, fmt), alt_text(comp, new[0], only)
    finally:
        plt.close(fig)


def step_diagram(roadmap: Roadmap, step: str, *, spec_of: SpecOf | None = None, resolution: int = 224,
                 scale: str = "paper scale", fmt: str = "svg", only: str | None = None,
                 look: Look = PAGE) -> tuple[bytes, str]:
    """One step's diagram as file bytes (``fmt`` svg or png) and its alt text (``only``: one
    side, see :func:`render`; ``look``: :data:`SLIDE` for a slide); the same specs give the same
    bytes from a cache."""
    if step not in roadmap.names:
        raise ConfigError(f"step '{step}' is not in roadmap '{roadmap.name}' (valid: {', '.join(roadmap.names)})")
    spec_of = spec_of or (lambda name: roadmap[name].spec)
    parent = roadmap[step].parent
    return _rendered(*_titles(roadmap, step, resolution, scale), (parent, spec_of(parent)) if parent else None,
                     (step, spec_of(step)), resolution, fmt, only, look)


def _scales_panels(roadmap: Roadmap, step: str, spec_of: SpecOf, trained: str, resolution: int,
                   proxy_resolution: int) -> tuple[list[Panel], tuple[str, ...], list[float]]:
    """The step's after side at the paper's scale and as trained, each marked against its own
    parent (so both show what the step changed), the parts either comparison shows."""
    paper = step_comparison(roadmap, step, resolution=resolution)
    proxy = step_comparison(roadmap, step, spec_of=spec_of, resolution=proxy_resolution)
    shown = tuple(p for p in ("stem", "downsample", "block", "head") if p in paper.shown or p in proxy.shown)
    panels = [Panel(paper.after, True, f"paper scale: the paper's network, {resolution} px input"),
              Panel(proxy.after, True, f"trained here: {trained}, {proxy_resolution} px input", accent=True)]
    heights = [_part_height([pa.side.parts.get(p) for pa in panels], SLIDE.k) for p in shown]
    return panels, shown, heights


def _scales_titles(roadmap: Roadmap, step: str) -> tuple[str, str]:
    index = roadmap.names.index(step) + 1
    return (f"{roadmap.name}, step {index}/{len(roadmap)}: {step}, at two scales",
            f"{roadmap[step].change} · stage 2's first block · top: the paper's network, bottom: the proxy "
            f"this run trained (same step, same rules, smaller)")


def _trained_words(proxy: ProxyScale) -> str:
    words = [f"width x{proxy.width:g}", f"depth x{proxy.depth:g}"] + (
        [f"stem stride {proxy.stem_stride}"] if proxy.stem_stride is not None else [])
    return f"proxy {proxy_label(proxy)}, " + ", ".join(words)


def _proxy_input(proxy: ProxyScale) -> int:
    """The input size a proxy is meant for: 32 px with a stride-2 (or 1) stem, else 64 px."""
    return 32 if proxy.stem_stride is not None else 64


def step_scales_figure(roadmap: Roadmap, step: str, proxy: ProxyScale, *, resolution: int = 224,
                       proxy_resolution: int | None = None) -> Any:
    """One step's block at the paper's scale above the same block under ``proxy`` (what a run
    with that proxy trains), each panel headed with its scale (close it with ``plt.close``)."""
    if step not in roadmap.names:
        raise ConfigError(f"step '{step}' is not in roadmap '{roadmap.name}' (valid: {', '.join(roadmap.names)})")
    panels, shown, heights = _scales_panels(roadmap, step, lambda n: proxy.apply(roadmap[n].spec),
                                            _trained_words(proxy), resolution,
                                            proxy_resolution or _proxy_input(proxy))
    return draw_panels(panels, shown, heights, _scales_titles(roadmap, step), SLIDE, True)


def save_step_scales(roadmap: Roadmap, step: str, proxy: ProxyScale, path: Path) -> Path:
    """Write :func:`step_scales_figure`; the format is the suffix of ``path`` (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--figure {path}: the file name must end in .svg or .png")
    data = step_scales_diagram(roadmap, step, lambda n: proxy.apply(roadmap[n].spec), _trained_words(proxy),
                               proxy_resolution=_proxy_input(proxy), fmt=fmt)[0]
    atomic_write_bytes(path, data)
    return path


def step_scales_diagram(roadmap: Roadmap, step: str, spec_of: SpecOf, trained: str, *, resolution: int = 224,
                        proxy_resolution: int = 224, fmt: str = "svg") -> tuple[bytes, str]:
    """:func:`step_scales_figure` for specs a run trained (``spec_of``, described by
    ``trained``), as file bytes and alt text: what a report page shows beside its diagrams."""
    if step not in roadmap.names:
        raise ConfigError(f"step '{step}' is not in roadmap '{roadmap.name}' (valid: {', '.join(roadmap.names)})")
    if trained.startswith("proxy as trained: "):  # a report page's scale line
        trained = "proxy " + trained.removeprefix("proxy as trained: ")
    panels, shown, heights = _scales_panels(roadmap, step, spec_of, trained, resolution, proxy_resolution)
    plt = _pyplot()
    fig = draw_panels(panels, shown, heights, _scales_titles(roadmap, step), SLIDE, True)
    try:
        data = figure_bytes(fig, fmt)
    finally:
        plt.close(fig)
    alt = (f"Step {step} at two scales. {panels[0].head}: " + _layers_text(panels[0].side, shown)
           + f". {panels[1].head}: " + _layers_text(panels[1].side, shown) + ".")
    return data, alt


def _layers_text(side: Side, shown: tuple[str, ...]) -> str:
    return "; ".join(f"{side.parts[p].title}: " + ", ".join(la.label for la in side.parts[p].all_layers)
                     for p in shown)


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
    """Write one step's diagram, slide-ready (:data:`SLIDE`: the two sides one under the other,
    text at least 10 px at 390 px wide); the format is the suffix of ``path`` (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--figure {path}: the file name must end in .svg or .png")
    atomic_write_bytes(path, step_diagram(roadmap, step, fmt=fmt, **{"look": SLIDE, **kwargs})[0])
    return path


def figure4(roadmap: Roadmap, *, resolution: int = 224, fmt: str = "svg", look: Look = SLIDE) -> tuple[bytes, str]:
    """The paper's Figure 4 counterpart: the roadmap's first block (ResNet-50's) and its last
    adopted step's (ConvNeXt-T's), at the roadmap's (paper) scale, as file bytes and alt text
    (``look``: :data:`SLIDE` stacks them, :data:`PAGE` puts them side by side)."""
    first, last = roadmap[0], [s for s in roadmap if s.adopted][-1]
    title = f"{roadmap.name}: the first and the last block (the paper's Figure 4)"
    where = ("top", "bottom") if look.stacked else ("left", "right")
    subtitle = (f"paper scale (what the paper describes), {resolution} px input · stage 2's first block · "
                f"{where[0]}: {first.name}, {where[1]}: {last.name}")
    return _rendered(title, subtitle, (first.name, first.spec), (last.name, last.spec), resolution, fmt, None, look)


def save_figure4(roadmap: Roadmap, path: Path, *, resolution: int = 224) -> Path:
    """Write :func:`figure4`; the format is the suffix of ``path`` (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"--figure4 {path}: the file name must end in .svg or .png")
    atomic_write_bytes(path, figure4(roadmap, resolution=resolution, fmt=fmt)[0])
    return path


def save_diagrams(roadmap: Roadmap, steps: list[str] | None, target: Path, proxy: ProxyScale | None = None
                  ) -> list[Path]:
    """``describe --figure``: a file ending in .svg/.png for one step, else a folder of
    ``<step>.svg`` (every step when ``steps`` is None); with ``proxy``, each step at the paper's
    scale above the same block under that proxy. Every name is checked before a file is written."""
    def save(name: str, path: Path) -> Path:
        return save_step_diagram(roadmap, name, path) if proxy is None else save_step_scales(roadmap, name, proxy, path)

    names = steps or roadmap.names
    unknown = [n for n in names if n not in roadmap.names]
    if unknown:
        raise ConfigError(f"--step: unknown step(s) {', '.join(unknown)} in roadmap '{roadmap.name}' "
                          f"(valid: {', '.join(roadmap.names)})")
    if target.suffix.lower().lstrip(".") in FORMATS:
        if len(names) != 1:
            raise ConfigError(f"--figure {target}: one file holds one step's diagram; give one --step NAME, "
                              f"or a folder to get one SVG per step")
        return [save(names[0], target)]
    if target.suffix:
        raise ConfigError(f"--figure {target}: give a file ending in .svg or .png, or a folder")
    return [save(n, target / f"{n}.svg") for n in names]


__all__ = ["PAGE", "SLIDE", "Look", "Panel", "alt_text", "draw_panels", "figure4", "figure_bytes", "render",
           "save_diagrams", "save_figure4", "save_step_diagram", "save_step_scales", "step_comparison",
           "step_diagram", "step_figure", "step_scales_diagram", "step_scales_figure"]
