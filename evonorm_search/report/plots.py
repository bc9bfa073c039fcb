"""The report's pictures, rendered off-screen to PNG bytes (matplotlib's Agg canvas).

Owns the figures: progress curves, Pareto scatter plots per pair of proxies with the known
layers marked, the rejection funnel, and a drawing of one layer graph. Figures are built
with `matplotlib.figure.Figure` and an explicit Agg canvas, so no pyplot state or global
backend setting is touched.
"""

from __future__ import annotations

import io
import itertools

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evonorm_search.graph import INITIAL_NODES, NUM_INITIAL, LayerGraph
from evonorm_search.report.data import FunnelRow, KnownScores, ProgressSeries

_DPI = 100
_FRONT_COLOR = "#d62728"
_KNOWN_COLOR = "#1f77b4"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def progress_png(series: ProgressSeries, proxies: tuple[str, ...],
                 score: str = "validation accuracy") -> bytes:
    """One panel per proxy: best so far (solid) and population median (dashed)."""
    figure = Figure(figsize=(4.2 * len(proxies), 3.4), layout="constrained")
    axes = figure.subplots(1, len(proxies), squeeze=False)[0]
    for ax, proxy in zip(axes, proxies):
        ax.plot(series.evaluated, series.best[proxy], color=_FRONT_COLOR, label="best so far")
        ax.plot(series.evaluated, series.median[proxy], color="#555555", linestyle="--",
                label="population median")
        ax.set_title(proxy)
        ax.set_xlabel("candidates evaluated")
        ax.set_ylabel(score)
        ax.grid(alpha=0.3)
        if not series.evaluated:
            ax.text(0.5, 0.5, "nothing evaluated yet", ha="center", va="center", transform=ax.transAxes)
    axes[0].legend(loc="lower right", fontsize=8)
    return _png(figure)


def pareto_pngs(
    points: list[dict[str, float]],
    front: list[dict[str, float]],
    known: KnownScores,
    proxies: tuple[str, ...],
    score: str = "validation accuracy",
) -> list[tuple[str, str, bytes]]:
    """(proxy x, proxy y, PNG) for each pair of proxies: all done layers, the front, known layers."""
    pictures = []
    for x_proxy, y_proxy in itertools.combinations(proxies, 2):
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        ax = figure.add_subplot()
        ax.scatter([p[x_proxy] for p in points], [p[y_proxy] for p in points], s=12,
                   color="#aaaaaa", label="done candidates")
        # Hollow and drawn last, so front members stay visible under a known-layer star.
        ax.scatter([p[x_proxy] for p in front], [p[y_proxy] for p in front], s=70,
                   facecolors="none", edgecolors=_FRONT_COLOR, linewidths=1.5, zorder=3,
                   label="Pareto front (all proxies)")
        marked = [(name, s) for name, s in known.scores.items() if x_proxy in s and y_proxy in s]
        if marked:
            ax.scatter([s[x_proxy] for _, s in marked], [s[y_proxy] for _, s in marked], s=70,
                       marker="*", color=_KNOWN_COLOR, label="known layers")
            for name, scores in marked:
                ax.annotate(name, (scores[x_proxy], scores[y_proxy]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points", color=_KNOWN_COLOR)
        ax.margins(0.15)
        ax.set_xlabel(f"{x_proxy} {score}")
        ax.set_ylabel(f"{y_proxy} {score}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        pictures.append((x_proxy, y_proxy, _png(figure)))
    return pictures


def funnel_png(rows: list[FunnelRow]) -> bytes:
    """Candidates removed per stage (left) and compute seconds per stage (right)."""
    figure = Figure(figsize=(9.0, 3.6), layout="constrained")
    left, right = figure.subplots(1, 2)
    labels = [row.stage for row in rows]
    positions = list(range(len(rows)))
    left.barh(positions, [row.removed for row in rows], color="#7f7f7f")
    left.set_yticks(positions, labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("candidates")
    left.set_title("removed at each stage")
    timed = [row for row in rows if row.seconds > 0]
    if timed:
        right.barh(range(len(timed)), [row.seconds for row in timed], color="#9467bd")
        right.set_yticks(range(len(timed)), [row.stage for row in timed], fontsize=8)
        right.invert_yaxis()
    else:
        right.text(0.5, 0.5, "no compute recorded", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("compute seconds (summed over proxies)")
    right.set_title("compute per stage")
    return _png(figure)


def _layers(graph: LayerGraph, live: frozenset[int]) -> dict[int, int]:
    """Longest-path depth of each live node from the inputs, for a left-to-right layout."""
    depth: dict[int, int] = {}
    for index in sorted(live):
        if index < NUM_INITIAL:
            depth[index] = 0
        else:
            depth[index] = 1 + max(depth[i] for i in graph.node(index).inputs)
    return depth


def graph_png(graph: LayerGraph) -> bytes:
    """The layer's live computation graph, inputs on the left, output on the right."""
    live = graph.live_nodes()
    depth = _layers(graph, live)
    drawing = nx.DiGraph()
    labels = {}
    for index in sorted(live):
        drawing.add_node(index, layer=depth[index])
        labels[index] = INITIAL_NODES[index] if index < NUM_INITIAL else graph.node(index).op
        if index >= NUM_INITIAL:
            for source in graph.node(index).inputs:
                drawing.add_edge(source, index)
    positions = nx.multipartite_layout(drawing, subset_key="layer")
    width = 1.6 + 1.3 * (max(depth.values()) + 1)
    height = 0.9 + 0.7 * max(sum(1 for d in depth.values() if d == level) for level in set(depth.values()))
    figure = Figure(figsize=(min(width, 14.0), max(2.2, min(height, 8.0))), layout="constrained")
    ax = figure.add_subplot()
    colors = [
        "#c7e9c0" if i < NUM_INITIAL else _FRONT_COLOR if i == graph.output else "#fdd0a2"
        for i in drawing.nodes
    ]
    nx.draw_networkx_nodes(drawing, positions, ax=ax, node_color=colors, node_size=1500,
                           edgecolors="#333333")
    nx.draw_networkx_edges(drawing, positions, ax=ax, arrows=True, node_size=1500,
                           arrowstyle="-|>", connectionstyle="arc3,rad=0.08")
    nx.draw_networkx_labels(drawing, positions, labels, ax=ax, font_size=7)
    ax.set_axis_off()
    ax.margins(0.12)
    return _png(figure)

