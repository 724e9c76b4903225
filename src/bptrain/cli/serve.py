"""`bptrain serve`: the draw-a-digit page for a checkpoint (the work is in bptrain.serve)."""

from __future__ import annotations

import os

import click

from .. import console, extras
from ..run.threads import blas_threads
from .options import (
    common_options,
    layers_option,
    preprocess_option,
    threads_option,
    weights_option,
)

BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@click.command(name="serve", epilog=console.exit_codes_help())
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.option(
    "--host", default="127.0.0.1", show_default=True,
    help="Address to listen on; another than loopback (0.0.0.0: every interface) lets other "
    "machines use the page, and is warned about.",
)  # fmt: skip
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
    help="Port to listen on; 0 picks a free one (the URL on stderr says which).",
)  # fmt: skip
@click.option(
    "--open", "open_browser", is_flag=True,
    help="Open the page in the web browser (a warning says so when none can be started).",
)  # fmt: skip
@weights_option
@layers_option
@preprocess_option
@threads_option
@common_options
def serve_command(
    checkpoint_path: str,
    host: str,
    port: int,
    open_browser: bool,
    weights: str,
    preprocess: str,
    threads: int | None,
) -> None:
    """Serve a page to draw a digit on and watch CHECKPOINT's network read it: its top
    classes, the 28x28 image it saw, every layer's output, and the gradient of the loss with
    respect to the input (the backward pass), updated as you draw.

    The page's JSON API works from scripts too: POST /api/predict with PNG bytes
    (Content-Type: image/png) returns the record of `bptrain predict` (?details=1 adds the
    layers and the input gradient); GET /api/model returns the model's summary. The URL is
    printed on stderr; Ctrl-C stops the server (exit 130, SIGTERM 143). Every error is a JSON
    {"error": ...}; a connection that sends no complete request head within 5 seconds is
    closed, and 64 requests are served at once (503 beyond). BLAS runs on one
    thread unless --threads or the environment (OMP_NUM_THREADS, ...) say otherwise: one
    drawing is too small to share, and requests would fight over the threads.
    """
    extras.require("starlette", "serve", "bptrain serve")
    extras.require("uvicorn", "serve", "bptrain serve")
    from ..serve.inference import Engine
    from ..serve.server import serve

    engine = Engine.load(checkpoint_path, weights, preprocess)
    if threads is None and not any(os.environ.get(name) for name in BLAS_VARIABLES):
        threads = 1
    with blas_threads(threads):
        serve(
            engine, host=host, port=port, open_browser=open_browser,
            verbose=console.OPTIONS.verbose,
        )  # fmt: skip
