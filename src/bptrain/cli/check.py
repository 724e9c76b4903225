"""`bptrain check`: your own layers, written the book's way, held against bptrain's."""

from __future__ import annotations

import logging

import click

from .. import console
from ..errors import CheckFailed
from .options import EXIT_CODES, common_options

log = logging.getLogger("bptrain")


@click.command(name="check", epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True, metavar="FILE.py[:CLASS]...")
@click.option(
    "--as",
    "as_name",
    default=None,
    metavar="NAME",
    help="Hold the one class named against this reference (affine, relu, conv2d, mul, "
    "softmax_with_loss, ...) instead of the one its name matches.",
)
@common_options
def check_command(files: tuple[str, ...], as_name: str | None) -> None:
    """Check layers written the book's way (forward/backward, Affine(W, b), dW attributes).

    Each class is matched to bptrain's reference by its name (Relu, Sigmoid, Affine, Linear,
    Convolution, Pooling, BatchNormalization, Dropout, MulLayer, AddLayer, SoftmaxWithLoss,
    ...) and checked on seeded inputs in float64 and float32: forward and backward against
    the reference and central differences, gradient shapes, no writing into dout or x, a
    second forward replacing the cache, float32 kept, no overflow for |x| up to 1000, and
    what its kind must do (4-D input, label forms, batch mean, inference). A class with no
    reference is checked against central differences. One JSON record per class on stdout,
    a scorecard on stderr; exit 1 when any check fails, 2 when a file does not import.
    """
    from ..check.runner import check_files
    from ..check.scorecard import scorecard

    def emit(record: dict) -> None:
        console.emit(record)

    reports = check_files(list(files), as_name, emit)
    for report in reports:
        log.info(scorecard(report))
    failing = [
        f"{r.cls} ({', '.join(x.name for x in r.results if not x.ok)})" for r in reports if not r.ok
    ]
    if failing:
        raise CheckFailed(
            f"{len(failing)} of {len(reports)} classes fail a check: {'; '.join(failing)}",
            hint="the scorecard above says what each failure means",
        )
