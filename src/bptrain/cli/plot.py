"""`bptrain plot`: the click command (the work is in visual/plot.py)."""

from __future__ import annotations

import sys

import click

from .. import console
from .options import common_options


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple | None:
    """'12x4.2' -> (12.0, 4.2) inches."""
    if value is None:
        return None
    try:
        width, height = (float(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT in inches, e.g. 12x4.2") from None
    return width, height


@click.command(name="plot", epilog=console.exit_codes_help())
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option(
    "--out",
    type=click.Path(),
    required=True,
    help="The picture to write: .png, .svg or .pdf (the format follows the suffix).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--title", default=None, help="The picture's title ('' for none).")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="TEXT",
    help="A run's name in the legend; one per RUN, in order (default: the file names).",
)
@click.option(
    "--dpi",
    type=click.IntRange(20, 1200),
    default=150,
    show_default=True,
    help="Pixels per inch of a PNG (and of images inside SVG and PDF).",
)
@click.option(
    "--size",
    callback=_size,
    default=None,
    metavar="WxH",
    help="Figure size in inches (default 12x4.2 for curves, 7x6 for a confusion matrix).",
)
@common_options
def plot_command(
    runs: tuple[str, ...],
    out: str,
    overwrite: bool,
    title: str | None,
    labels: tuple[str, ...],
    dpi: int,
    size: tuple[float, float] | None,
) -> None:
    """Draw learning curves of RUNs, or the confusion matrix of an eval, into --out.

    A RUN is a checkpoint (.npz, its stored history), the JSON Lines that `bptrain train`
    printed, or '-' for those on stdin: loss, accuracy (training solid, validation dashed,
    the best validation epoch starred) and learning rate by epoch, several RUNs overlaid.
    The JSON Lines of `bptrain eval` draw its confusion matrix instead (one at a time).
    Prints one JSON record naming the picture; an existing --out is kept without --overwrite.
    """
    from ..visual import plot

    request = plot.PlotRequest(
        runs=runs, out=out, overwrite=overwrite, title=title, labels=labels, dpi=dpi, size=size
    )
    plot.plot(request, emit=console.emit, stdin=sys.stdin.buffer)
