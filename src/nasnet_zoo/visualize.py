"""Pictures of cells: a left-to-right graph of inputs, op boxes, combiners and the concatenated output.

``draw_cell(cell, "normal.png")`` or ``draw_genotype(genotype, "cells.svg")``; the file type follows the suffix
(PNG, SVG, PDF). Both also return the matplotlib ``Figure``. No pyplot, so it works on headless machines.
matplotlib is the ``viz`` extra, imported at the first drawing, so ``import nasnet_zoo`` never needs it.
"""
from __future__ import annotations

from pathlib import Path
import types
from typing import TYPE_CHECKING, Any

from .genotypes import NUM_CELL_INPUTS, CellGenotype, Genotype
from .utils.extras import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_OP_LABELS = {
    "identity": "identity", "conv_1x3_3x1": "1x3 + 3x1 conv", "conv_1x7_7x1": "1x7 + 7x1 conv",
    "dil_conv_3x3": "3x3 dil conv", "avg_pool_3x3": "3x3 avg pool", "max_pool_3x3": "3x3 max pool",
    "max_pool_5x5": "5x5 max pool", "max_pool_7x7": "7x7 max pool", "conv_1x1": "1x1 conv",
    "conv_3x3": "3x3 conv", "sep_conv_3x3": "3x3 sep conv", "sep_conv_5x5": "5x5 sep conv",
    "sep_conv_7x7": "7x7 sep conv",
}
_INPUT_COLOR, _OUTPUT_COLOR = "#d9d9d9", "#fdd49e"
_COLUMN = 5.0  # horizontal distance between consecutive states
_OP_OFFSET = 1.6  # op boxes sit this far left of their combiner


def _op_color(op: str) -> str:
    if op.startswith("sep_conv"):
        return "#9ecae1"
    if op.startswith("avg_pool"):
        return "#a1d99b"
    if op.startswith("max_pool"):
        return "#fdae6b"
    if op == "identity":
        return "#f0f0f0"
    return "#bcbddc"


def _matplotlib(submodule: str) -> types.ModuleType:
    return require(f"matplotlib.{submodule}", extra="viz", feature="Drawing cells (matplotlib)")


def _state_label(idx: int) -> str:
    return ("h[i]", "h[i-1]")[idx] if idx < NUM_CELL_INPUTS else f"block {idx - NUM_CELL_INPUTS}"


def _layout(cell: CellGenotype) -> tuple[dict[int, tuple[float, float]], int]:
    """Position of every state: column = longest path from the inputs, blocks of a column stacked vertically."""
    depth = [0] * NUM_CELL_INPUTS
    for block in cell.blocks:
        depth.append(1 + max(depth[i] for i in block.inputs))
    columns: dict[int, list[int]] = {}
    for idx, d in enumerate(depth):
        columns.setdefault(d, []).append(idx)
    pos = {}
    for d, members in columns.items():
        gap = 2.2 if d else 2.0
        for row, idx in enumerate(members):
            pos[idx] = (d * _COLUMN, (len(members) - 1) / 2 * gap - row * gap)
    return pos, max(depth)


def _box(ax: Axes, xy: tuple[float, float], text: str, color: str, width: float = 2.1, height: float = 0.62,
         bold: bool = False) -> None:
    x, y = xy
    patches = _matplotlib("patches")
    ax.add_patch(patches.FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                        boxstyle="round,pad=0.04,rounding_size=0.15", facecolor=color,
                                        edgecolor="#444444", linewidth=1.0, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4, fontweight="bold" if bold else "normal")


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], **style: Any) -> None:
    patches = _matplotlib("patches")
    ax.add_patch(patches.FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, shrinkA=2, shrinkB=2,
                                         color=style.pop("color", "#555555"), linewidth=style.pop("linewidth", 0.9),
                                         zorder=2, **style))


def _draw_cell_on(ax: Axes, cell: CellGenotype, title: str) -> None:
    pos, max_depth = _layout(cell)
    half_box = 1.05
    for idx in range(NUM_CELL_INPUTS):
        _box(ax, pos[idx], _state_label(idx), _INPUT_COLOR, bold=True)
    for b, block in enumerate(cell.blocks):
        cx, cy = pos[NUM_CELL_INPUTS + b]
        for side, (src, op) in enumerate(zip(block.inputs, block.ops)):
            op_xy = (cx - _OP_OFFSET, cy + (0.45 if side == 0 else -0.45))
            sx, sy = pos[src]
            _arrow(ax, (sx + (half_box if src < NUM_CELL_INPUTS else 0.3), sy), (op_xy[0] - half_box, op_xy[1]))
            _box(ax, op_xy, _OP_LABELS.get(op, op), _op_color(op), height=0.5)
            _arrow(ax, (op_xy[0] + half_box, op_xy[1]), (cx - 0.3, cy))
        symbol = "+" if block.combiner == "add" else "C"
        ax.add_patch(_matplotlib("patches").FancyBboxPatch((cx - 0.3, cy - 0.3), 0.6, 0.6, boxstyle="circle,pad=0",
                                                           facecolor="white", edgecolor="#444444", linewidth=1.2,
                                                           zorder=3))
        ax.text(cx, cy, symbol, ha="center", va="center", fontsize=12, fontweight="bold", zorder=4)
        ax.text(cx, cy - 0.48, f"{b}", ha="center", va="top", fontsize=7, color="#777777", zorder=4)
    out_xy = ((max_depth + 1) * _COLUMN, 0.0)
    for idx in cell.concat:
        sx, sy = pos[idx]
        _arrow(ax, (sx + (half_box if idx < NUM_CELL_INPUTS else 0.3), sy), (out_xy[0] - 0.75, out_xy[1]),
               color="#c4691b", linewidth=0.8, linestyle=(0, (4, 2)), connectionstyle="arc3,rad=-0.08")
    _box(ax, out_xy, "concat\nh[i+1]", _OUTPUT_COLOR, width=1.5, height=0.9, bold=True)
    ys = [y for _, y in pos.values()]
    ax.set_xlim(-1.3, out_xy[0] + 1.1)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    used = ", ".join(_state_label(i) for i in cell.concat)
    ax.set_title(f"{title}\noutput = concat({used})" if title else f"output = concat({used})", fontsize=10)


def _figure_size(cell: CellGenotype) -> tuple[float, float]:
    pos, max_depth = _layout(cell)
    ys = [y for _, y in pos.values()]
    return 0.55 * ((max_depth + 1) * _COLUMN + 2.4), 0.55 * (max(ys) - min(ys) + 2.0) + 0.9


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def draw_cell(cell: CellGenotype, path: str | Path | None = None, title: str = "") -> Figure:
    """One cell as a graph; saved to ``path`` when given (format from the suffix)."""
    fig = _matplotlib("figure").Figure(figsize=_figure_size(cell))
    _draw_cell_on(fig.add_subplot(1, 1, 1), cell, title)
    return _save(fig, path)


def draw_genotype(genotype: Genotype, path: str | Path | None = None) -> Figure:
    """The Normal cell above the Reduction cell, in one picture."""
    sizes = [_figure_size(genotype.normal), _figure_size(genotype.reduction)]
    fig = _matplotlib("figure").Figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes) + 0.4))
    axes = fig.subplots(2, 1, gridspec_kw={"height_ratios": [h for _, h in sizes]})
    prefix = f"{genotype.name}: " if genotype.name else ""
    _draw_cell_on(axes[0], genotype.normal, f"{prefix}Normal cell")
    _draw_cell_on(axes[1], genotype.reduction, f"{prefix}Reduction cell")
    return _save(fig, path)
