"""`bptrain export`: a trained model as ONNX or safetensors (click only; the work is in
export/publish.py)."""

from __future__ import annotations

import click

from .. import console
from .options import EXIT_CODES, common_options, layers_option, weights_option

FORMATS = ("onnx", "safetensors")


@click.command(name="export", epilog=EXIT_CODES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.option(
    "--out", type=click.Path(), required=True,
    help="The file to write: model.onnx or model.safetensors.",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default=None,
    help="onnx or safetensors; default: from --out's suffix.",
)  # fmt: skip
@weights_option
@layers_option
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@common_options
def export_command(
    checkpoint_path: str, out: str, fmt: str | None, weights: str, overwrite: bool
) -> None:
    """Export CHECKPOINT's model for use outside bptrain.

    ONNX: input `pixels`, float32 (N, 1, 28, 28) for MNIST, in [0, 1] as bptrain's loader
    scales them; outputs `probabilities` and `logits`; opset 13, IR version 7. Where
    onnxruntime is installed the file is run beside bptrain's own forward pass before it is
    published: exit 1, and nothing written, when the two disagree.

    safetensors: the tensors under PyTorch's nn.Sequential names and layouts (load them with
    load_state_dict(strict=True)); the config, the class names and the module code in the
    header. Both need the `export` extra. One JSON record says what was written and how it
    was verified.
    """
    from ..export.publish import ExportRequest, export_checkpoint

    request = ExportRequest(
        checkpoint=checkpoint_path, out=out, fmt=fmt, weights=weights, overwrite=overwrite
    )
    export_checkpoint(request, emit=console.emit)
