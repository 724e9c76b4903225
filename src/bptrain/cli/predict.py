"""`bptrain predict`: the class of each of your own images, one JSON record per image."""

from __future__ import annotations

import sys

import click

from .. import console
from ..run.threads import blas_threads
from .options import (
    EXIT_CODES,
    common_options,
    layers_option,
    preprocess_option,
    threads_option,
    weights_option,
)


@click.command(name="predict", epilog=EXIT_CODES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, metavar="[INPUT]...")
@click.option(
    "--files-from",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Read input paths from FILE, one per line ('-' for stdin: find ... | bptrain predict "
    "M --files-from -), or NUL-separated (find -print0; a NUL in FILE is enough to tell).",
)
@click.option(
    "-0", "--null", is_flag=True,
    help="--files-from FILE is NUL-separated (find -print0, xargs -0), even without a NUL in it.",
)  # fmt: skip
@click.option("--recursive", is_flag=True, help="Read folders with their subfolders.")
@preprocess_option
@click.option(
    "--top-k", type=click.IntRange(min=0), default=0, help="Add the K most likely classes."
)
@click.option(
    "--save-preprocessed",
    type=click.Path(),  # not file_okay=False: a file in the way is exit 4, as for every --out
    default=None,
    metavar="DIR",
    help="Write the 28x28 image the network saw for each input (why was it misread?) as "
    "DIR/NNNNN-NAME.png. A DIR that already holds such images is refused without --overwrite.",
)
@click.option("--overwrite", is_flag=True, help="Let --save-preprocessed replace images in DIR.")
@weights_option
@layers_option
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
    help="Images per forward pass.",
)  # fmt: skip
@threads_option
@common_options
def predict_command(
    checkpoint_path: str,
    inputs: tuple[str, ...],
    files_from: str | None,
    null: bool,
    recursive: bool,
    preprocess: str,
    top_k: int,
    save_preprocessed: str | None,
    overwrite: bool,
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
    if "-" in inputs and files_from == "-":
        raise click.UsageError("'-' (an image on stdin) and --files-from - both want stdin")
    listed = _listed(files_from, null) if files_from is not None else ()
    everything = (*inputs, *listed)
    if not everything:
        raise click.UsageError("give at least one INPUT or --files-from FILE")
    from ..predict.classify import PredictRequest

    request = PredictRequest(
        checkpoint=checkpoint_path, inputs=everything, recursive=recursive, preprocess=preprocess,
        top_k=top_k, save_preprocessed=save_preprocessed, overwrite=overwrite,
        batch_size=batch_size, weights=weights,
    )  # fmt: skip
    from ..predict import classify as predict

    with blas_threads(threads):
        predict.predict(
            request, emit=console.emit, on_error=console.error_line, stdin=sys.stdin.buffer
        )


def _listed(files_from: str, null: bool) -> tuple[str, ...]:
    """The paths --files-from names, read as bytes (names need not be UTF-8)."""
    from ..predict.read import paths_from_list

    try:
        if files_from == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(files_from, "rb") as f:
                data = f.read()
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {console.shown_name(files_from)}: {error.strerror or error}",
            param_hint="'--files-from'",
        ) from None
    return paths_from_list(data, null=null)
