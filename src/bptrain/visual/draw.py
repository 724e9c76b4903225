"""`bptrain graph`: a seed example or a network, drawn in the format asked for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.trace import trace
from ..errors import ConfigError
from ..run import artifact
from ..run.inputs import DataOptions, check_fits, load_dataset, with_stored_folder
from .graph import FORMATS, PAGE_FORMAT, Graph, check_format, render
from .model_source import Source, load_source
from .network_graph import network_graph
from .seed_graphs import EXAMPLES, seed_graph
from .steps import Step, seed_steps
from .steps_network import network_steps, steps_graph
from .steps_page import page

log = logging.getLogger("bptrain.graph")

SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid",
            ".json": "json", ".svg": "svg", ".png": "png", ".pdf": "pdf", ".html": "html",
            ".htm": "html"}  # fmt: skip
TRACED_CAPTION = (
    "one forward and backward pass on {n} {split} samples, inference mode (weights: {weights})"
    "\nred: ‖∂L‖, the norm of the gradient flowing back along each edge"
)
STEPS_SAMPLES = 8  # the html page's batch for a network without --batch: small and seeded
STEPS_CAPTION = (
    "one forward and backward pass on {words}, inference mode; red: ‖∂L‖, the norm of the "
    "gradient flowing back along each edge"
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
    steps: list[Step] | None = None
    if fmt == PAGE_FORMAT:
        graph, steps = _steps_of(request, read_stdin)
        data: str | bytes = page(graph, steps)
    else:
        graph = _graph_of(request, read_stdin)
        data = render(graph, fmt)
    artifact.write(data, path, overwrite=request.overwrite, what=f"a {fmt} picture")
    if path is not None:
        log.info(f"{graph.title}: {fmt} written to {path}")
        record = {"event": "graph", "source": request.source, "format": fmt, "out": str(path),
                  "nodes": len(graph.nodes), "edges": len(graph.edges)}  # fmt: skip
        emit(record if steps is None else record | {"steps": len(steps)})


def _graph_of(request: GraphRequest, read_stdin: Callable[[], str]) -> Graph:
    if request.source in EXAMPLES:
        _no_batch(request.source, request.batch)
        return seed_graph(request.source, request.settings)
    source = _load(request, read_stdin)
    if request.batch is None:
        return network_graph(source.network, _title(source))
    x, t, n = _test_batch(source, request)
    stats = trace(source.network, x, t).stats()
    weights = source.model.weights if source.model else ""
    caption = TRACED_CAPTION.format(n=n, split="test", weights=weights)
    return network_graph(source.network, _title(source), stats, caption)


def _steps_of(request: GraphRequest, read_stdin: Callable[[], str]) -> tuple[Graph, list[Step]]:
    """The graph and its forward and backward steps, for the html page."""
    if request.source in EXAMPLES:
        _no_batch(request.source, request.batch)
        return seed_steps(request.source, request.settings)
    source = _load(request, read_stdin)
    network = source.network
    if request.batch is None:
        # No data needed: seeded random inputs in the network's input shape show the flow.
        rng = np.random.default_rng(0)
        x = rng.random((STEPS_SAMPLES, *network.input_shape)).astype(network.dtype)
        t = rng.integers(0, int(network.output_shape[-1]), STEPS_SAMPLES)
        words = f"{STEPS_SAMPLES} seeded random inputs (uniform in [0, 1)) with random labels"
    else:
        x, t, n = _test_batch(source, request)
        words = f"the first {n} test samples"
    traced = trace(network, x, t)
    caption = STEPS_CAPTION.format(words=words)
    graph = steps_graph(network, _title(source), traced, caption)
    return graph, network_steps(network, traced, words)


def _no_batch(example: str, batch: int | None) -> None:
    if batch is not None:
        raise ConfigError(f"--batch traces a network; {example} is one of the seed's examples")


def _load(request: GraphRequest, read_stdin: Callable[[], str]) -> Source:
    return load_source(
        request.source, request.settings, weights=request.weights, data=request.data,
        read_stdin=read_stdin,
    )  # fmt: skip


def _title(source: Source) -> str:
    layers = len(source.network.layers)
    return f"{source.label}: {layers} layers, {source.network.num_params:,} parameters"


def _test_batch(source: Source, request: GraphRequest) -> tuple[Any, Any, int]:
    """The first --batch test samples of a checkpoint's data (x, t, how many there were)."""
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
    return dataset.x_test[:n], dataset.t_test[:n], n
