"""Architecture drawings: a left-to-right layout, an SVG string and PNG bytes.

The drawing shows what an ``Arch`` holds: every node that is not padding, in
columns by topological depth (the length of the longest path from the input), its
box coloured by op, with a legend of the ops it uses. Nodes on no input -> output
path, which the network ignores, are drawn dashed and faded. NAS-Bench-201 cells are
drawn in their node-op form (a node per cell edge). Pure functions: nothing here
reads or writes files.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from html import escape

import numpy as np

from jaxnas.arch import INPUT, OUTPUT, PAD, Arch, live_mask

# Tableau 10: distinct in colour and in lightness.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
END_COLOUR = "#e8e8e8"
_BOX_W, _BOX_H, _COL_GAP, _ROW_GAP, _MARGIN, _LEGEND_ROW, _LANE_GAP = 128, 30, 44, 16, 12, 18, 7


def op_colour(op: int) -> str:
    """The fill colour of op id ``op`` (input and output share a light grey)."""
    return END_COLOUR if op in (INPUT, OUTPUT) else PALETTE[op % len(PALETTE)]


def _text_colour(fill: str) -> str:
    red, green, blue = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return "#111111" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#ffffff"


@dataclasses.dataclass(frozen=True)
class Node:
    index: int  # position in the padded Arch
    op: int
    label: str
    x: float  # top-left corner of the box, pixels
    y: float
    live: bool


Point = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Edge:
    source: int  # Arch indices
    target: int
    live: bool
    start: Point
    curves: tuple[tuple[Point, Point, Point], ...]  # cubic Bezier (control, control, end)


@dataclasses.dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    legend: tuple[tuple[int, str], ...]  # (op id, name) of the ops drawn
    width: float
    height: float


def layout(arch: Arch, op_names: Sequence[str]) -> Layout:
    """Places the non-padding nodes of one architecture in columns by depth."""
    adj = np.asarray(arch.adj) != 0
    ops = np.asarray(arch.ops)
    n = len(ops)
    shown = [i for i in range(n) if ops[i] != PAD]
    live = live_mask(adj)
    live = np.zeros(n, bool) if live is None else live
    depth = np.zeros(n, int)
    for j in shown:  # topological order: edges point from lower to higher indices
        sources = np.flatnonzero(adj[:j, j])
        depth[j] = max((depth[i] + 1 for i in sources), default=0 if j == 0 else 1)
    depth[n - 1] = max(depth[n - 1], max((depth[i] + 1 for i in shown[:-1]), default=1))
    columns: dict[int, list[int]] = {}
    for i in shown:
        columns.setdefault(int(depth[i]), []).append(i)
    tallest = max(len(column) for column in columns.values())
    graph_h = tallest * _BOX_H + (tallest - 1) * _ROW_GAP
    # Edges that skip a column run in lanes above the boxes, the longest highest, so
    # that no edge passes behind a box.
    long = sorted(((int(depth[j] - depth[i]), int(i), int(j)) for i, j in np.argwhere(adj)
                   if depth[j] - depth[i] > 1), reverse=True)
    lane_of = {(i, j): _MARGIN + k * _LANE_GAP for k, (_, i, j) in enumerate(long)}
    top = _MARGIN + len(long) * _LANE_GAP + (_LANE_GAP if long else 0)
    nodes = []
    for d, column in sorted(columns.items()):
        column_h = len(column) * _BOX_H + (len(column) - 1) * _ROW_GAP
        for row, i in enumerate(column):
            label = ("input" if ops[i] == INPUT else "output" if ops[i] == OUTPUT
                     else op_names[ops[i]])
            nodes.append(Node(index=i, op=int(ops[i]), label=label,
                              x=_MARGIN + d * (_BOX_W + _COL_GAP),
                              y=top + (graph_h - column_h) / 2 + row * (_BOX_H + _ROW_GAP),
                              live=bool(live[i])))
    by_index = {node.index: node for node in nodes}
    edges = tuple(_route(by_index[int(i)], by_index[int(j)], bool(live[i] and live[j]),
                         lane_of.get((int(i), int(j))))
                  for i, j in np.argwhere(adj))
    used = sorted({node.op for node in nodes if node.op >= 0})
    legend = tuple((op, op_names[op]) for op in used)
    width = 2 * _MARGIN + (max(columns) + 1) * _BOX_W + max(columns) * _COL_GAP
    height = top + _MARGIN + graph_h + _ROW_GAP + len(legend) * _LEGEND_ROW
    return Layout(nodes=tuple(nodes), edges=edges, legend=legend, width=width, height=height)


def _route(source: Node, target: Node, live: bool, lane: float | None) -> Edge:
    """From the right of one box to the left of another: one S-curve to the next
    column, or up to ``lane``, along it, and down again."""
    x0, y0 = source.x + _BOX_W, source.y + _BOX_H / 2
    x1, y1 = target.x, target.y + _BOX_H / 2
    if lane is None:
        bend = (x1 - x0) / 2
        curves = (((x0 + bend, y0), (x1 - bend, y1), (x1, y1)),)
    else:
        half = _COL_GAP / 2
        curves = (((x0 + half, y0), (x0, lane), (x0 + half, lane)),
                  ((x0 + half, lane), (x1 - half, lane), (x1 - half, lane)),
                  ((x1, lane), (x1 - half, y1), (x1, y1)))
    return Edge(source=source.index, target=target.index, live=live, start=(x0, y0),
                curves=curves)


def _svg_path(edge: Edge) -> str:
    points = " ".join(f"C{a[0]:.1f},{a[1]:.1f} {b[0]:.1f},{b[1]:.1f} {c[0]:.1f},{c[1]:.1f}"
                      for a, b, c in edge.curves)
    return f"M{edge.start[0]:.1f},{edge.start[1]:.1f} {points}"


def _arrow_head(control: Point, tip: Point) -> str:
    direction = np.subtract(tip, control)
    direction = direction / max(np.linalg.norm(direction), 1e-9)
    normal = np.array([-direction[1], direction[0]])
    base = np.asarray(tip) - 7 * direction
    corners = [tip, base + 3.5 * normal, base - 3.5 * normal]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)


def arch_svg(arch: Arch, op_names: Sequence[str], title: str | None = None) -> str:
    """One architecture as a standalone SVG document (a string).

    Args:
      arch: one architecture (adj (N, N), ops (N,)).
      op_names: the space's op names (op id i is ``op_names[i]``).
      title: an optional tooltip for the whole drawing.
    """
    plan = layout(arch, op_names)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="arch" '
             f'width="{plan.width:.0f}" height="{plan.height:.0f}" '
             f'viewBox="0 0 {plan.width:.0f} {plan.height:.0f}" font-family="sans-serif" '
             f'font-size="11">']
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    for edge in plan.edges:
        stroke = "#555555" if edge.live else "#bbbbbb"
        dash = "" if edge.live else ' stroke-dasharray="4 3"'
        _, control, tip = edge.curves[-1]
        parts.append(f'<path d="{_svg_path(edge)}" fill="none" stroke="{stroke}" '
                     f'stroke-width="1.3"{dash}/>'
                     f'<polygon points="{_arrow_head(control, tip)}" fill="{stroke}"/>')
    for node in plan.nodes:
        fill = op_colour(node.op)
        style = "" if node.live else ' opacity="0.45" stroke-dasharray="4 3"'
        parts.append(
            f'<g class="node" data-node="{node.index}" data-op="{escape(node.label)}">'
            f"<title>node {node.index}: {escape(node.label)}"
            f"{'' if node.live else ' (on no input-output path)'}</title>"
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{_BOX_W}" height="{_BOX_H}" rx="5" '
            f'fill="{fill}" stroke="#333333"{style}/>'
            f'<text x="{node.x + _BOX_W / 2:.1f}" y="{node.y + _BOX_H / 2 + 4:.1f}" '
            f'text-anchor="middle" fill="{_text_colour(fill)}">{escape(node.label)}</text></g>')
    legend_y = plan.height - _MARGIN - len(plan.legend) * _LEGEND_ROW
    for row, (op, name) in enumerate(plan.legend):
        y = legend_y + row * _LEGEND_ROW
        parts.append(f'<g class="legend"><rect x="{_MARGIN}" y="{y + 3:.1f}" width="12" '
                     f'height="12" fill="{op_colour(op)}" stroke="#333333"/>'
                     f'<text x="{_MARGIN + 18}" y="{y + 13:.1f}">{escape(name)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def arch_png(arch: Arch, op_names: Sequence[str], dpi: int = 100) -> bytes:
    """The drawing of ``arch_svg`` rendered by matplotlib, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
    from matplotlib.path import Path

    plan = layout(arch, op_names)
    figure = Figure(figsize=(plan.width / 100, plan.height / 100), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, plan.width)
    axes.set_ylim(plan.height, 0)
    axes.axis("off")
    for edge in plan.edges:
        points = [edge.start, *(point for curve in edge.curves for point in curve)]
        codes = [Path.MOVETO] + [Path.CURVE4] * (len(points) - 1)
        axes.add_patch(FancyArrowPatch(
            path=Path(points, codes), arrowstyle="-|>", mutation_scale=9, lw=1.0,
            color="#555555" if edge.live else "#bbbbbb",
            linestyle="-" if edge.live else "--"))
    for node in plan.nodes:
        fill = op_colour(node.op)
        axes.add_patch(FancyBboxPatch(
            (node.x, node.y), _BOX_W, _BOX_H, boxstyle="round,pad=0,rounding_size=5",
            facecolor=fill, edgecolor="#333333", alpha=1.0 if node.live else 0.45,
            linestyle="-" if node.live else "--"))
        axes.text(node.x + _BOX_W / 2, node.y + _BOX_H / 2, node.label, ha="center",
                  va="center", fontsize=7.5, color=_text_colour(fill))
    legend_y = plan.height - _MARGIN - len(plan.legend) * _LEGEND_ROW
    for row, (op, name) in enumerate(plan.legend):
        y = legend_y + row * _LEGEND_ROW
        axes.add_patch(Rectangle((_MARGIN, y + 3), 12, 12, facecolor=op_colour(op),
                                 edgecolor="#333333"))
        axes.text(_MARGIN + 18, y + 9, name, va="center", fontsize=7.5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


__all__ = ["END_COLOUR", "PALETTE", "Edge", "Layout", "Node", "arch_png", "arch_svg", "layout",
           "op_colour"]
