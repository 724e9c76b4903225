"""A network drawn as the seed draws it: a chain of layer nodes ending in Softmax-with-Loss.

Each node shows its type, output shape and parameter count. With a traced pass (trace.py),
each node also shows its activations (mean, std, the share of zeros after ReLU and of units
dead for the whole batch) and its parameters' gradient norms, and each edge the norm of the
gradient flowing back along it: the usual way to spot a dead or exploding layer. Such layers
are highlighted (WARN_* below).
"""

from __future__ import annotations

from typing import Any

from ..engine.network import Network
from .graph import Edge, Graph, Node, number

# The seed's and the book's names for the classes it draws.
DISPLAY = {"Relu": "ReLU", "LeakyRelu": "LeakyReLU", "SoftmaxWithLoss": "Softmax-with-Loss",
           "IdentityWithMSE": "Identity-with-MSE"}  # fmt: skip
WARN_DEAD = 0.5  # half of a ReLU's units off for every sample: a dying layer
WARN_STEP = 1.0  # a gradient as large as the weights themselves: an exploding layer
DEEP = 3  # longer stacks are drawn top to bottom (left to right they get too wide to read)


def display_name(obj: Any) -> str:
    name = type(obj).__name__
    return DISPLAY.get(name, name)


def network_graph(
    network: Network, title: str, stats: dict[str, Any] | None = None, caption: str = ""
) -> Graph:
    """The graph of `network`; `stats` (Trace.stats()) annotates it with a real pass."""
    layer_stats = stats["layers"] if stats else [None] * len(network.layers)
    nodes = [Node("input", f"input {_shape(network.input_shape)}", kind="value")]
    edges = []
    previous = "input"
    for i, (layer, row, traced) in enumerate(
        zip(network.layers, network.summary(), layer_stats, strict=True)
    ):
        node_id = f"layer{i}"
        lines = [f"#{i} → {_shape(row['output_shape'])}"]
        if row["params"]:
            lines.append(f"{row['params']:,} parameters")
        warn = False
        if traced is not None:
            more, warn = _traced_lines(traced)
            lines += more
        nodes.append(Node(node_id, display_name(layer), kind="layer", lines=lines, warn=warn))
        edges.append(Edge(previous, node_id, *_edge_values(i, stats)))
        previous = node_id
    loss_lines = [] if stats is None else [f"loss {number(stats['loss'])}"]
    nodes.append(Node("loss", display_name(network.loss_layer), kind="layer", lines=loss_lines))
    last = len(network.layers) - 1
    edges.append(Edge(previous, "loss", *_edge_values(last + 1, stats)))
    nodes.append(Node("L", "L", kind="value"))
    edges.append(Edge("loss", "L", None if stats is None else number(stats["loss"]),
                      None if stats is None else "1"))  # fmt: skip
    direction = "TB" if len(network.layers) > DEEP else "LR"
    return Graph(title, nodes, edges, caption, direction, legend=False, values=stats or {})


def _edge_values(i: int, stats: dict[str, Any] | None) -> tuple[None, str | None]:
    """Along the edge into layer i: nothing forward (the nodes show their shapes), the norm
    of the gradient coming back when traced."""
    if stats is None:
        return None, None
    grad = stats["input_gradient"] if i == 0 else stats["layers"][i - 1]["gradient"]
    return None, f"‖∂L‖ {_short(grad['norm'])}"


def _traced_lines(traced: dict[str, Any]) -> tuple[list[str], bool]:
    act = traced["activation"]
    lines = [f"out mean {_short(act['mean'])} std {_short(act['std'])}"]
    warn = False
    if "zeros" in act:
        lines.append(f"zeros {_percent(act['zeros'])} · dead units {_percent(act['dead_units'])}")
        warn = act["dead_units"] is not None and act["dead_units"] >= WARN_DEAD
    for key, p in traced["params"].items():
        lines.append(f"‖∇{key}‖ {_short(p['grad_norm'])} (‖{key}‖ {_short(p['norm'])})")
        ratio = p["grad_to_weight"]
        warn = warn or p["grad_norm"] is None or (ratio is not None and ratio >= WARN_STEP)
    return lines, warn


def _shape(shape: Any) -> str:
    dims = [str(d) for d in shape]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def _short(value: float | None) -> str:
    return "nan" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
