"""The commands that draw or describe: `graph` and `summary` (click only; the work is in
visual/draw.py and summary.py)."""

from __future__ import annotations

import sys

import click

from .. import console
from ..visual.graph import FORMATS
from ..visual.seed_graphs import EXAMPLES
from .options import (
    EXIT_CODES,
    common_options,
    config_argument,
    data_of,
    data_options,
    layers_option,
    set_option,
    weights_option,
)

EXAMPLE_LIST = "\n".join(f"  {name}: {ex.description}" for name, ex in EXAMPLES.items())
GRAPH_HELP = f"""Draw a computational graph: one of the seed's examples, or a network.

EXAMPLE is computed by the real graph nodes, forward and backward; --set changes its inputs
(e.g. --set apple.price=120). CONFIG or CHECKPOINT draws the layer stack; a checkpoint with
--batch N annotates it with one real pass.

\b
Examples:
{EXAMPLE_LIST}
"""


def _read_stdin() -> str:
    return sys.stdin.read()


@click.command(name="graph", help=GRAPH_HELP, epilog=EXIT_CODES)
@click.argument("source", metavar="EXAMPLE|CONFIG|CHECKPOINT")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="An example's input (apple.price=120, tax=1.08, x=2, dout=0.5) or a config key.",
)
@click.option("--x", "x", type=float, default=None, help="sigmoid: the input x (--set x=X).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="dot (default), mermaid, json, html (a self-contained page that steps through the "
    "forward and backward pass), or svg/png/pdf (through Graphviz's `dot`); default: from "
    "--out's suffix.",
)
@click.option("--out", type=click.Path(), default=None, help="Write to FILE.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="A checkpoint: one forward and backward pass on N test samples; nodes show "
    "activation and gradient statistics.",
)
@weights_option
@layers_option
@data_options
@common_options
def graph_command(
    source: str,
    overrides: tuple[str, ...],
    x: float | None,
    fmt: str | None,
    out: str | None,
    overwrite: bool,
    batch: int | None,
    weights: str,
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
) -> None:
    from ..visual.draw import GraphRequest, draw_graph

    settings = overrides if x is None else (*overrides, f"x={x!r}")
    if x is not None and source != "sigmoid":
        raise click.UsageError("--x is the sigmoid example's input")
    request = GraphRequest(
        source=source, settings=tuple(settings), fmt=fmt, out=out, overwrite=overwrite,
        batch=batch, weights=weights, data=data_of(data_dir, mirrors, offline),
    )  # fmt: skip
    draw_graph(request, emit=console.emit, read_stdin=_read_stdin)


@click.command(name="summary", epilog=EXIT_CODES)
@config_argument
@set_option
@click.option("--json", "as_json", is_flag=True, help="One JSON record instead of the table.")
@click.option("--out", type=click.Path(), default=None, help="Write to FILE.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@layers_option
@common_options
def summary_command(
    config: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
    out: str | None,
    overwrite: bool,
) -> None:
    """Summarize CONFIG or CHECKPOINT's network without loading any data.

    Each layer's name, type, output shape and parameters; totals; parameter memory; the
    activation memory training keeps per sample (measured on a small random batch).
    """
    from ..visual.summary import print_summary

    print_summary(
        config, overrides, as_json=as_json, out=out, overwrite=overwrite,
        read_stdin=_read_stdin, emit=console.emit,
    )  # fmt: skip
