"""The step-through page: one self-contained HTML file (inline SVG, CSS and JavaScript).

The graph is laid out here in Python (layers from the longest path, nodes ordered by their
neighbours), so the page needs neither Graphviz nor anything from the network. The steps go in
as JSON in a non-executed script element, with `<`, `>` and `&` escaped so no label can end
it; the page's Content-Security-Policy allows only its own script and style (by hash), and
nothing from elsewhere. steps_page.js and steps_page.css, beside this module, drive it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import asdict, dataclass
from importlib import resources

from .graph import Graph, Node
from .steps import Step

GAP_LR = 130  # room between columns for the edges' two labels
GAP_TB = 64
SPACE = 34  # between nodes of one column (or row)
MARGIN = 24
OP_RADIUS = 22


@dataclass
class Box:
    x: float  # centre
    y: float
    w: float
    h: float


def _size(node: Node) -> tuple[float, float]:
    """A node's drawn size, from its text (about 7.5 px a character at 13 px)."""
    if node.kind == "op":
        return 2 * OP_RADIUS, 2 * OP_RADIUS
    if node.kind == "value":
        return 9 * len(node.label) + 20, 30
    width = max(len(text) for text in [node.label, *node.lines]) * 7.2 + 24
    return width, 24 + 16 * len(node.lines)


def _ranks(graph: Graph) -> dict[str, int]:
    """Each node's column: its longest path from an input; an input sits just before the
    first node that uses it (the seed draws `tax` beside the × it goes into)."""
    preds: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        preds[edge.target].append(edge.source)
    rank: dict[str, int] = {}

    def depth(node: str, seen: tuple[str, ...] = ()) -> int:
        if node not in rank:
            if node in seen:  # a cycle: our graphs have none, but never loop for ever
                return 0
            rank[node] = 1 + max((depth(p, (*seen, node)) for p in preds[node]), default=-1)
        return rank[node]

    for node in graph.nodes:
        depth(node.id)
    for node in graph.nodes:
        users = [rank[e.target] for e in graph.edges if e.source == node.id]
        if not preds[node.id] and users:
            rank[node.id] = min(users) - 1
    return rank


def _columns(graph: Graph, rank: dict[str, int]) -> list[list[str]]:
    """Nodes per column, ordered so that edges cross little (two barycentre sweeps)."""
    columns: list[list[str]] = [[] for _ in range(max(rank.values(), default=0) + 1)]
    for node in graph.nodes:
        columns[rank[node.id]].append(node.id)
    neighbours: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        neighbours[edge.target].append(edge.source)
        neighbours[edge.source].append(edge.target)
    for sweep in (columns[1:], columns[-2::-1], columns[1:]):
        place = {node: i for column in columns for i, node in enumerate(column)}
        for column in sweep:
            column.sort(key=lambda n: _mean([place[m] for m in neighbours[n]], place[n]))
    return columns


def _mean(values: list[int], default: float) -> float:
    return sum(values) / len(values) if values else default


def layout(graph: Graph) -> dict[str, Box]:
    """Centres and sizes of the nodes: columns left to right ("LR") or rows top down."""
    sizes = {node.id: _size(node) for node in graph.nodes}
    across = graph.direction != "TB"  # the flow runs along x
    boxes: dict[str, Box] = {}
    along = 0.0
    for column in _columns(graph, _ranks(graph)):
        if not column:
            continue
        depth = max(sizes[n][0 if across else 1] for n in column)  # the column's extent
        spans = [sizes[n][1 if across else 0] for n in column]
        offset = -(sum(spans) + SPACE * (len(spans) - 1)) / 2
        for node, span in zip(column, spans, strict=True):
            w, h = sizes[node]
            centre = offset + span / 2
            x, y = (along + depth / 2, centre) if across else (centre, along + depth / 2)
            boxes[node] = Box(x, y, w, h)
            offset += span + SPACE
        along += depth + (GAP_LR if across else GAP_TB)
    return boxes


def svg(graph: Graph) -> str:
    """The graph as inline SVG; every node and edge carries data-* for the page's script."""
    boxes = layout(graph)
    across = graph.direction != "TB"
    left = min((b.x - b.w / 2 for b in boxes.values()), default=0) - MARGIN
    top = min((b.y - b.h / 2 for b in boxes.values()), default=0) - MARGIN
    right = max((b.x + b.w / 2 for b in boxes.values()), default=0) + MARGIN
    bottom = max((b.y + b.h / 2 for b in boxes.values()), default=0) + MARGIN
    width, height = right - left + (140 if not across else 0), bottom - top
    parts = [
        f'<svg id="graph" '
        f'viewBox="{left:.0f} {top:.0f} {width:.0f} {height:.0f}" width="{width:.0f}" '
        f'role="img" aria-label="{_attr(graph.title)}">',
        "<defs>",
        *(_marker(name) for name in ("arrow", "arrow-forward", "arrow-backward")),
        "</defs>",
    ]
    for i, edge in enumerate(graph.edges):
        parts.append(_edge_svg(i, boxes[edge.source], boxes[edge.target], edge, across))
    for node in graph.nodes:
        parts.append(_node_svg(node, boxes[node.id]))
    parts.append("</svg>")
    return "\n".join(parts)


def _marker(name: str) -> str:
    return (
        f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z"/></marker>'
    )


def _edge_svg(i: int, source: Box, target: Box, edge, across: bool) -> str:
    if across:
        sx, sy, tx, ty = source.x + source.w / 2, source.y, target.x - target.w / 2, target.y
        mx = (sx + tx) / 2
        path = f"M{sx:.1f},{sy:.1f} C{mx:.1f},{sy:.1f} {mx:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
        # Near the source, where edges that meet at one node are still apart.
        fx, fy, bx, by, anchor = sx + 10, sy - 7, sx + 10, sy + 17, "start"
    else:
        sx, sy, tx, ty = source.x, source.y + source.h / 2, target.x, target.y - target.h / 2
        my = (sy + ty) / 2
        path = f"M{sx:.1f},{sy:.1f} C{sx:.1f},{my:.1f} {tx:.1f},{my:.1f} {tx:.1f},{ty:.1f}"
        fx, fy, bx, by, anchor = (sx + tx) / 2 + 10, my - 4, (sx + tx) / 2 + 10, my + 12, "start"
    labels = []
    if edge.forward is not None:
        labels.append(f'<text class="value forward" x="{fx:.1f}" y="{fy:.1f}" '
                      f'text-anchor="{anchor}">{_text(edge.forward)}</text>')  # fmt: skip
    if edge.backward is not None:
        labels.append(f'<text class="value backward" x="{bx:.1f}" y="{by:.1f}" '
                      f'text-anchor="{anchor}">{_text(edge.backward)}</text>')  # fmt: skip
    return (
        f'<g class="edge" data-edge="{i}" data-source="{_attr(edge.source)}" '
        f'data-target="{_attr(edge.target)}"><path d="{path}"/>{"".join(labels)}</g>'
    )


def _node_svg(node: Node, box: Box) -> str:
    head = (
        f'<g class="node {node.kind}{" warn" if node.warn else ""}" data-node="{_attr(node.id)}">'
    )
    if node.kind == "op":
        shape = f'<circle cx="{box.x:.1f}" cy="{box.y:.1f}" r="{OP_RADIUS}"/>'
        texts = [(node.label, box.y + 5, "label")]
    else:
        x, y = box.x - box.w / 2, box.y - box.h / 2
        shape = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
                 f'rx="8"/>')  # fmt: skip
        first = box.y + 5 if node.kind == "value" else y + 18
        texts = [(node.label, first, "label")]
        texts += [(line, first + 16 * (k + 1), "line") for k, line in enumerate(node.lines)]
    rows = "".join(
        f'<text class="{cls}" x="{box.x:.1f}" y="{y:.1f}" text-anchor="middle">{_text(t)}</text>'
        for t, y, cls in texts
    )
    return f"{head}{shape}{rows}</g>"


def _text(text: str) -> str:
    return html.escape(text, quote=False)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def script_json(data: object) -> str:
    """JSON that is safe inside <script>: no `<`, `>` or `&` survives to end the element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _asset(name: str) -> str:
    return resources.files("bptrain.visual").joinpath(name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def page(graph: Graph, steps: list[Step], intro: str = "") -> str:
    """The whole page: the graph, the steps as JSON, the controls."""
    script, style = _asset("steps_page.js"), _asset("steps_page.css")
    data = {"title": graph.title, "steps": [asdict(step) for step in steps]}
    policy = (
        f"default-src 'none'; script-src '{_hash(script)}'; style-src '{_hash(style)}'; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    intro_html = "".join(f"<p>{_text(line)}</p>" for line in intro.split("\n") if line)
    return _TEMPLATE.format(
        policy=_attr(policy), title=_text(graph.title), style=style, intro=intro_html,
        svg=svg(graph), last=len(steps) - 1, count=len(steps), data=script_json(data),
        script=script,
    )  # fmt: skip


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body data-step="0" data-phase="forward">
<header>
<h1>{title}</h1>
<div class="intro">{intro}<p class="legend"><span class="swatch forward"></span> forward values
 <span class="swatch backward"></span> gradients flowing back (backward)</p></div>
</header>
<main>
<figure id="figure">{svg}</figure>
<section id="panel" aria-live="polite">
<p id="phase"></p>
<h2 id="step-title"></h2>
<p id="caption"></p>
<p id="equation"></p>
<ol id="terms"></ol>
</section>
</main>
<nav id="controls" aria-label="steps">
<button id="prev" type="button" aria-label="previous step">&#9664; Back</button>
<input id="slider" type="range" min="0" max="{last}" step="1" value="0" aria-label="step">
<button id="next" type="button" aria-label="next step">Next &#9654;</button>
<button id="play" type="button">Play</button>
<span id="counter">1 / {count}</span>
</nav>
<p class="keys">Keys: &#8594; next, &#8592; back, Home first step, End last step.</p>
<script type="application/json" id="steps-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
