"""`bptrain predict`: the class of each of your own images, one JSON record per image."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import console
from ..run.threads import blas_threads
from .options import EXIT_CODES, common_options, preprocess_option, threads_option, weights_option


@click.command(name="predict", epilog=EXIT_CODES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "--files-from",
    type=click.File("r"),
    default=None,
    help="Read input paths from FILE, one per line ('-' for stdin: find ... | bptrain predict "
    "M --files-from -).",
)
@click.option("--recursive", is_flag=True, help="Read folders with their subfolders.")
@preprocess_option
@click.option(
    "--top-k", type=click.IntRange(min=0), default=0, help="Add the K most likely classes."
)
@click.option(
    "--save-preprocessed",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write the 28x28 image the network saw for each input (why was it misread?).",
)
@weights_option
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
    help="Images per forward pass.",
)  # fmt: skip
@threads_option
@common_options
def predict_command(
    checkpoint_path: str,
    inputs: tuple[str, ...],
    files_from: Any,
    recursive: bool,
    preprocess: str,
    top_k: int,
    save_preprocessed: str | None,
    weights: str,
    batch_size: int,
    threads: int | None,
) -> None:
    """Predict the class of each image in INPUT: image files (PNG, JPEG, ...), .npy arrays,
    IDX files, folders, or '-' for one image's bytes on stdin. One JSON record per image.

    Images are prepared like the checkpoint's training data (for digits: white ink on black,
    fitted into 20x20, centred by mass in 28x28). Exit 3 when any input could not be read
    (each gets its own Error: line; the others are still predicted).
    """
    listed = tuple(line.strip() for line in files_from or () if line.strip())
    everything = (*inputs, *listed)
    if not everything:
        raise click.UsageError("give at least one INPUT or --files-from FILE")
    if "-" in inputs and files_from is not None and files_from.name == "<stdin>":
        raise click.UsageError("'-' (an image on stdin) and --files-from - both want stdin")
    from ..predict.classify import PredictRequest

    request = PredictRequest(
        checkpoint=checkpoint_path, inputs=everything, recursive=recursive, preprocess=preprocess,
        top_k=top_k, save_preprocessed=save_preprocessed, batch_size=batch_size, weights=weights,
    )  # fmt: skip
    from ..predict import classify as predict

    with blas_threads(threads):
        predict.predict(
            request, emit=console.emit, on_error=console.error_line, stdin=sys.stdin.buffer
        )
