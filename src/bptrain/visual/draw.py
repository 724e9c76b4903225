"""`bptrain graph`: a seed example or a network, drawn in the format asked for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.trace import trace
from ..errors import ConfigError
from ..run import artifact
from ..run.inputs import DataOptions, check_fits, load_dataset, with_stored_folder
from .graph import FORMATS, Graph, check_format, render
from .model_source import Source, load_source
from .network_graph import network_graph
from .seed_graphs import EXAMPLES, seed_graph

log = logging.getLogger("bptrain.graph")

SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid",
            ".json": "json", ".svg": "svg", ".png": "png", ".pdf": "pdf"}  # fmt: skip
TRACED_CAPTION = (
    "one forward and backward pass on {n} {split} samples, inference mode (weights: {weights})"
    "\nred: ‖∂L‖, the norm of the gradient flowing back along each edge"
)


@dataclass(frozen=True)
class GraphRequest:
    source: str
    settings: tuple[str, ...] = ()  # an example's inputs, or a config's --set overrides
    fmt: str | None = None  # None: from --out's suffix, else dot
    out: str | None = None
    overwrite: bool = False
    batch: int | None = None  # trace a pass on this many test samples (a checkpoint)
    weights: str = "auto"
    data: DataOptions = field(default_factory=DataOptions)


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt is not None:
        return fmt
    if out is None:
        return "dot"
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"--out {out}: cannot tell the format from the suffix {suffix or '(none)'}",
            hint=f"end the name in {', '.join(SUFFIXES)}, or give --format ({', '.join(FORMATS)})",
        )
    return SUFFIXES[suffix]


def draw_graph(
    request: GraphRequest,
    *,
    emit: Callable[[dict[str, Any]], None],
    read_stdin: Callable[[], str] = lambda: "",
) -> None:
    """Build the graph, render it, write it to --out (then one record) or stdout."""
    fmt = output_format(request.fmt, request.out)
    check_format(fmt)  # a missing `dot` fails before any work
    path = artifact.check_out(request.out, overwrite=request.overwrite)
    graph = _graph_of(request, read_stdin)
    artifact.write(render(graph, fmt), path, overwrite=request.overwrite, what=f"a {fmt} picture")
    if path is not None:
        log.info(f"{graph.title}: {fmt} written to {path}")
        emit({"event": "graph", "source": request.source, "format": fmt, "out": str(path),
              "nodes": len(graph.nodes), "edges": len(graph.edges)})  # fmt: skip


def _graph_of(request: GraphRequest, read_stdin: Callable[[], str]) -> Graph:
    if request.source in EXAMPLES:
        if request.batch is not None:
            raise ConfigError(
                f"--batch traces a network; {request.source} is one of the seed's examples"
            )
        return seed_graph(request.source, request.settings)
    source = load_source(
        request.source, request.settings, weights=request.weights, data=request.data,
        read_stdin=read_stdin,
    )  # fmt: skip
    layers = len(source.network.layers)
    title = f"{source.label}: {layers} layers, {source.network.num_params:,} parameters"
    if request.batch is None:
        return network_graph(source.network, title)
    stats, caption = _traced(source, request)
    return network_graph(source.network, title, stats, caption)


def _traced(source: Source, request: GraphRequest) -> tuple[dict[str, Any], str]:
    """One real pass on the first --batch test samples of the checkpoint's data."""
    model = source.model
    if model is None:
        raise ConfigError(
            "--batch needs a checkpoint: a config's network has only its initial weights",
            hint="train it first (bptrain train CONFIG), then graph the checkpoint",
        )
    data = with_stored_folder(request.data, model.config, model.ckpt)
    dataset = load_dataset(model.config, data, splits=("test",))
    check_fits(model.ckpt, dataset)
    n = min(int(request.batch or 0), dataset.x_test.shape[0])
    traced = trace(source.network, dataset.x_test[:n], dataset.t_test[:n])
    caption = TRACED_CAPTION.format(n=n, split="test", weights=model.weights)
    return traced.stats(), caption
