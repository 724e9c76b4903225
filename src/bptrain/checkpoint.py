"""Checkpoints: one .npz with parameters, optimizer and loop state, and a JSON metadata entry.

Written to a temp file beside the target, read back, fsynced and renamed over the target, so an
existing checkpoint is only ever replaced by one that loads. Read with allow_pickle=False.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import CheckpointError
from .network import Network
from .optimizers import Optimizer
from .train import TrainState

FORMAT = "bptrain-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__meta__"
# Array groups inside the .npz: "<group>/<name>".
GROUPS = ("param", "buffer", "optim", "best", "state")


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata plus array groups."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]

    def group(self, name: str) -> dict[str, np.ndarray]:
        return self.arrays.get(name, {})


def _state_meta(state: TrainState) -> dict[str, Any]:
    return {
        "epoch": state.epoch,
        "step": state.step,
        "loss_sum": state.loss_sum,
        "correct": state.correct,
        "seen": state.seen,
        "seconds": state.seconds,
        "best_val_accuracy": state.best_val_accuracy,
        "best_epoch": state.best_epoch,
        "stale_epochs": state.stale_epochs,
        "stopped_early": state.stopped_early,
    }


def save(
    path: str | Path,
    network: Network,
    optimizer: Optimizer,
    state: TrainState,
    rng: np.random.Generator,
    meta: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically; the metadata gets format, versions, loop and RNG state."""
    path = Path(path)
    full_meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bptrain_version": __version__,
        "numpy_version": np.__version__,
        **meta,
        "train_state": _state_meta(state),
        "history": state.history,
        "rng_state": rng.bit_generator.state,
    }
    arrays: dict[str, np.ndarray] = {
        META_KEY: np.frombuffer(json.dumps(full_meta, allow_nan=False).encode(), dtype=np.uint8)
    }
    arrays.update({f"param/{k}": v for k, v in network.params.items()})
    arrays.update({f"buffer/{k}": v for k, v in network.buffers.items()})
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays.update({f"best/{k}": v for k, v in (state.best_params or {}).items()})
    if state.order is not None:
        arrays["state/order"] = state.order
    _write_atomically(path, arrays)
    return path


def check_writable(path: Path) -> None:
    """Fail early, with a CheckpointError, when a checkpoint could not be written at `path`."""
    if path.is_dir():
        raise CheckpointError(f"--out {path} is a folder", hint="give a file path ending in .npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="choose another --out path",
        ) from None


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="choose another --out path",
        ) from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is a normal file
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        load(tmp)  # never put a checkpoint under its final name that does not read back
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="check free space and permissions, or choose another --out",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def load(path: str | Path) -> Checkpoint:
    """Read and sanity-check a checkpoint file (no pickle, known format and version)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            hint="give the path printed in the training summary",
        )
    try:
        # Opening the file ourselves closes it even when numpy gives up on a damaged archive.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            files = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint {path} is not a readable .npz file ({error})",
            hint="it may be truncated or not a bptrain checkpoint",
        ) from None
    if META_KEY not in files:
        raise CheckpointError(
            f"checkpoint {path} has no {META_KEY} entry", hint="it was not written by bptrain"
        )
    try:
        meta = json.loads(files.pop(META_KEY).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {path}: metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a bptrain checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')}, "
            f"this bptrain reads version {FORMAT_VERSION}",
            hint=f"use the bptrain version that wrote it ({meta.get('bptrain_version')})",
        )
    arrays: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    for name, value in files.items():
        group, _, key = name.partition("/")
        if group not in arrays or not key:
            raise CheckpointError(f"checkpoint {path} has an unexpected entry {name!r}")
        arrays[group][key] = value
    return Checkpoint(path, meta, arrays)


def _copy_into(
    targets: dict[str, np.ndarray], stored: dict[str, np.ndarray], what: str, path: Path
) -> None:
    """Copy stored arrays into the live ones after checking keys, shapes and dtypes strictly."""
    if set(stored) != set(targets):
        missing, extra = sorted(set(targets) - set(stored)), sorted(set(stored) - set(targets))
        raise CheckpointError(
            f"checkpoint {path}: {what} do not match the model (missing {missing or 'none'}, "
            f"unexpected {extra or 'none'})",
            hint="was it written for another config?",
        )
    for key, target in targets.items():
        value = stored[key]
        if value.shape != target.shape or value.dtype != target.dtype:
            raise CheckpointError(
                f"checkpoint {path}: {what} {key} is {value.dtype}{list(value.shape)}, the model "
                f"needs {target.dtype}{list(target.shape)}",
                hint="was it written for another config?",
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: {what} {key} holds non-finite values")
    for key, target in targets.items():
        target[...] = stored[key]


def restore_network(network: Network, ckpt: Checkpoint, weights: str = "last") -> None:
    """Load the last (or best-validation) parameters and buffers into a built network."""
    if weights == "best":
        best = ckpt.group("best")
        if not best:
            raise CheckpointError(
                f"checkpoint {ckpt.path} holds no best-validation weights",
                hint="train with data.validation > 0, or use --weights last",
            )
        params = {k: v for k, v in best.items() if k in network.params}
        buffers = {k: v for k, v in best.items() if k not in network.params}
    else:
        params, buffers = ckpt.group("param"), ckpt.group("buffer")
    _copy_into(network.params, params, "parameters", ckpt.path)
    _copy_into(network.buffers, buffers, "buffers", ckpt.path)


def restore_training(
    ckpt: Checkpoint, network: Network, optimizer: Optimizer, rng: np.random.Generator
) -> TrainState:
    """Everything needed to continue exactly: weights, optimizer, generator and loop state."""
    restore_network(network, ckpt)
    optim = ckpt.group("optim")
    try:
        expected = {k: v for k, v in optimizer.state_dict().items()}
        for key, value in optim.items():
            if key in expected and expected[key].shape != value.shape:
                raise CheckpointError(
                    f"checkpoint {ckpt.path}: optimizer state {key} has shape "
                    f"{value.shape}, expected {expected[key].shape}"
                )
        optimizer.load_state_dict(optim)
        rng.bit_generator.state = ckpt.meta["rng_state"]
        s = ckpt.meta["train_state"]
        state = TrainState(
            epoch=int(s["epoch"]),
            step=int(s["step"]),
            loss_sum=float(s["loss_sum"]),
            correct=int(s["correct"]),
            seen=int(s["seen"]),
            seconds=float(s["seconds"]),
            history=list(ckpt.meta["history"]),
            best_val_accuracy=s["best_val_accuracy"],
            best_epoch=s["best_epoch"],
            stale_epochs=int(s["stale_epochs"]),
            stopped_early=bool(s["stopped_early"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: training state is incomplete ({error})",
            hint="it cannot be resumed; start a new run",
        ) from None
    state.order = ckpt.group("state").get("order")
    best = ckpt.group("best")
    state.best_params = {k: v.copy() for k, v in best.items()} if best else None
    return state
