"""A computational graph to draw: nodes, and edges carrying a forward value and a derivative.

The seed draws backpropagation this way: the forward value above each edge, the derivative
flowing back under it in another colour. `to_dot` and `to_mermaid` write that picture as text;
`render` asks Graphviz's `dot` program to lay it out as SVG, PNG or PDF.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError

TEXT_FORMATS = ("dot", "mermaid", "json")
PAGE_FORMAT = "html"  # the step-through page (steps_page.py): it needs the steps, not just this
DOT_FORMATS = ("svg", "png", "pdf")
FORMATS = (*TEXT_FORMATS, PAGE_FORMAT, *DOT_FORMATS)

FORWARD_COLOUR = "#1f1f1f"
BACKWARD_COLOUR = "#d62728"  # the seed's figures draw derivatives in red
DOT_LEGEND = "black: forward values · red: derivatives flowing back (backward)"
MERMAID_LEGEND = "→ forward values · ← derivatives flowing back (backward)"
INSTALL_DOT = (
    "install Graphviz (Debian/Ubuntu: apt install graphviz; macOS: brew install graphviz; "
    "conda install graphviz); --format dot or mermaid needs nothing"
)


@dataclass
class Node:
    """`kind`: "value" (an input or output, drawn as its name), "op" (a circle), "layer"."""

    id: str
    label: str
    kind: str = "op"
    lines: list[str] = field(default_factory=list)  # more text under a layer's name
    warn: bool = False  # drawn highlighted (a dead or exploding layer)


@dataclass
class Edge:
    source: str
    target: str
    forward: str | None = None  # the value that flows forward along the edge
    backward: str | None = None  # the derivative that flows back along it


@dataclass
class Graph:
    title: str
    nodes: list[Node]
    edges: list[Edge]
    caption: str = ""
    direction: str = "LR"  # the seed draws left to right; a deep network reads better "TB"
    legend: bool = True  # explain the two values on each edge (a network's caption says more)
    values: dict[str, Any] = field(default_factory=dict)  # the numbers, for --format json

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, allow_nan=False) + "\n"


def number(value: float) -> str:
    """A value as the seed writes it: 220 and 2.2, not 220.00000000000003."""
    text = f"{float(value):.6g}"
    return "0" if text == "-0" else text


def to_dot(graph: Graph) -> str:
    lines = [
        "digraph bptrain {",
        f"  rankdir={graph.direction};",
        '  graph [fontname="Helvetica", nodesep=0.5, ranksep=0.6, labelloc=t, fontsize=16,',
        f"         label=<{_html(graph.title)}{_caption(_legend(graph, DOT_LEGEND))}>];",
        '  node [fontname="Helvetica", fontsize=13];',
        '  edge [fontname="Helvetica", fontsize=12, arrowsize=0.7];',
    ]
    lines += [f"  {_dot_node(node)}" for node in graph.nodes]
    lines += [f"  {_dot_edge(edge)}" for edge in graph.edges]
    return "\n".join([*lines, "}"]) + "\n"


def _legend(graph: Graph, legend: str) -> str:
    """The caption, after the colour (or arrow) legend when edges carry both values."""
    both = any(edge.backward is not None and edge.forward is not None for edge in graph.edges)
    lines = [legend] if both and graph.legend else []
    return "\n".join([*lines, graph.caption] if graph.caption else lines)


def _html(text: str) -> str:
    return html.escape(text, quote=True)


def _caption(caption: str) -> str:
    if not caption:
        return ""
    rows = "".join(
        f'<br/><font point-size="11">{_html(line)}</font>' for line in caption.split("\n")
    )
    return rows


def _dot_node(node: Node) -> str:
    name = _quoted(node.id)
    if node.kind == "value":
        return f"{name} [shape=plaintext, label=<<b>{_html(node.label)}</b>>];"
    if node.kind == "op":
        return f'{name} [shape=circle, width=0.6, fixedsize=true, label="{_escape(node.label)}"];'
    rows = "".join(f'<br/><font point-size="10">{_html(line)}</font>' for line in node.lines)
    fill = "#fde2e1" if node.warn else "#eef3fb"
    return (
        f'{name} [shape=box, style="rounded,filled", fillcolor="{fill}", '
        f"label=<<b>{_html(node.label)}</b>{rows}>];"
    )


def _dot_edge(edge: Edge) -> str:
    parts = []
    if edge.forward is not None:
        parts.append(f'<font color="{FORWARD_COLOUR}">{_html(edge.forward)}</font>')
    if edge.backward is not None:
        parts.append(f'<font color="{BACKWARD_COLOUR}">{_html(edge.backward)}</font>')
    label = f" [label=<{'<br/>'.join(parts)}>]" if parts else ""
    return f"{_quoted(edge.source)} -> {_quoted(edge.target)}{label};"


def _quoted(text: str) -> str:
    return f'"{_escape(text)}"'


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart (GitHub renders it in Markdown): "→ forward" over "← backward"."""
    # Mermaid has no captions: the legend and caption go into the title.
    title = " · ".join([graph.title, *_legend(graph, MERMAID_LEGEND).split("\n")]).strip(" ·")
    lines = ["---", f"title: {_mermaid_text(title)}", "---", f"flowchart {graph.direction}"]
    ids = {node.id: f"n{i}" for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        lines.append(f"  {ids[node.id]}{_mermaid_shape(node)}")
    for edge in graph.edges:
        parts = [f"→ {edge.forward}" if edge.forward is not None else None]
        parts.append(f"← {edge.backward}" if edge.backward is not None else None)
        text = "<br/>".join(p for p in parts if p)
        label = f'|"{_mermaid_text(text)}"|' if text else ""
        lines.append(f"  {ids[edge.source]} -->{label} {ids[edge.target]}")
    warned = [ids[n.id] for n in graph.nodes if n.warn]
    if warned:
        lines.append("  classDef warn fill:#fde2e1,stroke:#d62728")
        lines.append(f"  class {','.join(warned)} warn")
    return "\n".join(lines) + "\n"


def _mermaid_shape(node: Node) -> str:
    text = _mermaid_text("<br/>".join([node.label, *node.lines]))
    if node.kind == "op":
        return f'(("{text}"))'
    if node.kind == "value":
        return f'["{text}"]'
    return f'("{text}")'


def _mermaid_text(text: str) -> str:
    # Mermaid's entity codes: a quote would end the label.
    return text.replace('"', "#quot;")


def to_text(graph: Graph, fmt: str) -> str:
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "mermaid":
        return to_mermaid(graph)
    return graph.to_json()


def check_format(fmt: str) -> None:
    """Fail before any work when `fmt` needs the `dot` program and it is not installed."""
    if fmt in DOT_FORMATS and shutil.which("dot") is None:
        raise ConfigError(f"--format {fmt} needs Graphviz's `dot` program, which is not on PATH",
                          hint=INSTALL_DOT)  # fmt: skip


def render(graph: Graph, fmt: str) -> str | bytes:
    """The graph in `fmt`: text for dot/mermaid/json, bytes from `dot -T<fmt>` otherwise."""
    if fmt in TEXT_FORMATS:
        return to_text(graph, fmt)
    if fmt not in DOT_FORMATS:  # html is drawn from the steps: draw.py calls steps_page
        raise ValueError(f"render: no such format {fmt!r}")
    check_format(fmt)
    result = subprocess.run(
        ["dot", f"-T{fmt}"], input=to_dot(graph).encode(), capture_output=True, timeout=120
    )
    if result.returncode != 0:  # our DOT is generated: a failure here is a bug in bptrain
        raise RuntimeError(f"dot -T{fmt} failed: {result.stderr.decode(errors='replace')[:500]}")
    return result.stdout
