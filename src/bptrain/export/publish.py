"""`bptrain export`: a checkpoint's model as an ONNX graph or safetensors, checked, run beside
bptrain's forward pass, and only then published under its name.

The order is that of every bptrain command that writes: the format and the destination are
judged before any work (exit 2, exit 4), the checkpoint is loaded with eval's weights (exit 4
when damaged or edited; a warning when unfinished), and the file is written by files.py's one
writer, whose verify hook runs the checks on the written bytes (exit 1 when they disagree).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import ConfigError, DestinationError
from ..run.model import Model, load_model
from . import onnx_graph, safetensors_file, verify
from .metadata import describe

log = logging.getLogger(__name__)

FORMATS = ("onnx", "safetensors")
SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors"}


@dataclass(frozen=True)
class ExportRequest:
    checkpoint: str
    out: str
    fmt: str | None = None  # None: from the suffix of `out`
    weights: str = "auto"
    overwrite: bool = False


def format_of(out: str, fmt: str | None) -> str:
    """--format, else the format --out's suffix names; exit 2 when neither says."""
    if fmt is not None:
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"cannot tell the format from --out {out} (suffix {suffix or 'none'})",
            hint="name the file .onnx or .safetensors, or give --format onnx|safetensors",
        )
    return SUFFIXES[suffix]


def export_checkpoint(request: ExportRequest, emit: Callable[[dict[str, Any]], None]) -> dict:
    """Write the file and emit the `export` record."""
    fmt, out = format_of(request.out, request.fmt), Path(request.out)
    # The engine first: a missing extra is exit 2 before anything is read or written.
    if fmt == "onnx":
        onnx_graph.onnx_module()
    else:
        safetensors_file.safetensors_numpy()
    files.check_destination(out, overwrite=request.overwrite)
    _refuse_the_checkpoint_itself(out, request.checkpoint)
    model = load_model(request.checkpoint, request.weights)
    x = verify.samples(model)
    write = _write_onnx if fmt == "onnx" else _write_safetensors
    verified = write(model, out, request.overwrite, x)
    record = {
        "event": "export",
        "format": fmt,
        "out": str(out),
        "opset": onnx_graph.OPSET if fmt == "onnx" else None,
        "ir_version": onnx_graph.IR_VERSION if fmt == "onnx" else None,
        "checkpoint": request.checkpoint,
        "weights": model.weights,
        "complete": model.ckpt.complete,
        "bytes": out.stat().st_size,
        "verified": verified,
    }
    log.info(f"wrote {out} ({fmt}, {model.weights} weights of {request.checkpoint})")
    emit(record)
    return record


def _refuse_the_checkpoint_itself(out: Path, checkpoint: str) -> None:
    """--out naming the checkpoint (with --overwrite) would replace the model with its export."""
    try:
        same = out.exists() and os.path.samefile(out, checkpoint)
    except OSError:  # the checkpoint is missing or unreadable: loading it will say so
        return
    if same:
        raise DestinationError(
            f"--out {out} is the checkpoint being exported", hint="choose another --out"
        )


def _write_onnx(model: Model, out: Path, overwrite: bool, x: np.ndarray) -> dict | None:
    proto = onnx_graph.build(model.network, describe(model), _title(model))
    verified: dict[str, Any] = {}

    def check(tmp: Path) -> None:
        onnx_graph.check_file(tmp)
        run = verify.onnx_runner(tmp)
        if run is not None:
            verified["record"] = verify.against_bptrain(model.network, run, x, "ONNX Runtime")

    with files.atomic_write(out, overwrite=overwrite, verify=check) as handle:
        handle.write(proto.SerializeToString())
    return verified.get("record")


def _write_safetensors(model: Model, out: Path, overwrite: bool, x: np.ndarray) -> dict:
    metadata = safetensors_file.header(model, describe(model))
    data, tensors = safetensors_file.encoded(model, metadata)
    verified: dict[str, Any] = {}

    def check(tmp: Path) -> None:
        verified["record"] = safetensors_file.check_file(tmp, model, tensors, metadata, x)

    with files.atomic_write(out, overwrite=overwrite, verify=check) as handle:
        handle.write(data)
    return verified["record"]


def _title(model: Model) -> str:
    """The graph's name: the run's preset or config name, else the checkpoint's."""
    return model.info.name or model.ckpt.path.stem
