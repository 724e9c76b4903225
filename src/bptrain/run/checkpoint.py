"""Checkpoints: one .npz with parameters, optimizer and loop state, and a JSON metadata entry.

This module and its two neighbours are the only code that knows the file's layout:
checkpoint_schema (format marks, digest, metadata schema), checkpoint_read (reading a file as
untrusted input) and restore (loading a checkpoint into a network or a run). Everyone else uses
`save`, `load` and the typed accessors of `Checkpoint` and `RunInfo`.

A save goes through bptrain.files.atomic_write: a temp file beside the target, read back with
every check a load makes, fsynced and only then renamed over the target, so an existing
checkpoint is only ever replaced by one that loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, files
from ..accel import kernels
from ..engine.network import Network
from ..engine.optimizers import Optimizer
from ..engine.train import TrainState
from ..errors import CheckpointError
from ..functional import finite_or_null
from . import checkpoint_read
from .checkpoint_schema import FORMAT, FORMAT_VERSION, META_KEY, digest

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_KEY",
    "Checkpoint",
    "RunInfo",
    "digest",
    "load",
    "save",
    "state_from_dict",
    "state_to_dict",
]


@dataclass(frozen=True)
class RunInfo:
    """What a run records about itself once: enough to rebuild its model and find its data."""

    config: dict[str, Any]  # the resolved config, seed included
    seed: int
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    dataset: str
    checksums: dict[str, str] = field(default_factory=dict)
    folder: str | None = None
    name: str | None = None  # the preset or config file it came from (titles of pictures)
    # Where a run's first weights came from (train --init-from): file, sha256 and format.
    init_from: dict[str, str] | None = None
    # Where the code of the run's own layers came from, one record per type: a file's
    # {type, file, sha256} or a package's {type, entry_point, distribution, version}.
    layer_sources: tuple[dict[str, Any], ...] = ()

    def to_meta(self) -> dict[str, Any]:
        # init_from and layer_sources are written only when there is one: other runs' files
        # stay as they were.
        started = {"init_from": dict(self.init_from)} if self.init_from else {}
        own = {"layer_sources": [dict(s) for s in self.layer_sources]} if self.layer_sources else {}
        return {
            "config": self.config,
            "seed": self.seed,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "data": {"dataset": self.dataset, "checksums": self.checksums, "folder": self.folder},
            "name": self.name,
            **started,
            **own,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> RunInfo:
        data = meta["data"]
        return cls(
            config=dict(meta["config"]),
            seed=int(meta["seed"]),
            input_shape=tuple(meta["input_shape"]),
            num_classes=int(meta["num_classes"]),
            class_names=tuple(meta["class_names"]),
            dataset=data["dataset"],
            checksums=dict(data["checksums"]),
            folder=data["folder"],
            # Files written before names were recorded have none; a name is never trusted
            # to be anything but a short string.
            name=_short_string(meta.get("name")),
            init_from=dict(meta["init_from"]) if "init_from" in meta else None,
            layer_sources=tuple(dict(s) for s in meta.get("layer_sources", ())),
        )


def _short_string(value: Any, limit: int = 200) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint: metadata plus array groups."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]

    def group(self, name: str) -> dict[str, np.ndarray]:
        return self.arrays.get(name, {})

    @property
    def info(self) -> RunInfo:
        return RunInfo.from_meta(self.meta)

    @property
    def complete(self) -> bool:
        """True once the run finished and was tested; False while it can be resumed."""
        return bool(self.meta["complete"])

    @property
    def weights(self) -> str:
        """The weights the summary was tested with: 'last' or 'best'."""
        return str(self.meta["weights"])

    @property
    def epochs(self) -> int:
        """Epochs completed."""
        return int(self.meta["train_state"]["epoch"])

    @property
    def step(self) -> int:
        """Mini-batches completed in the unfinished epoch (0 at an epoch boundary)."""
        return int(self.meta["train_state"]["step"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.meta["history"])

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta["metrics"])


def state_to_dict(state: TrainState) -> dict[str, Any]:
    """The loop state's scalars (its arrays go into the .npz as entries)."""
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
        "ema_updates": state.ema.updates if state.ema is not None else None,
        "wall_seconds": state.wall_seconds,
    }


def state_from_dict(s: Mapping[str, Any], history: list[dict[str, Any]]) -> TrainState:
    """The inverse of state_to_dict (the metadata was validated on load)."""
    return TrainState(
        epoch=int(s["epoch"]),
        step=int(s["step"]),
        loss_sum=float(s["loss_sum"]),
        correct=int(s["correct"]),
        seen=int(s["seen"]),
        seconds=float(s["seconds"]),
        history=[dict(r) for r in history],
        best_val_accuracy=s["best_val_accuracy"],
        best_epoch=s["best_epoch"],
        stale_epochs=int(s["stale_epochs"]),
        stopped_early=bool(s["stopped_early"]),
        wall_seconds=float(s.get("wall_seconds") or 0.0),  # files from before the run clock
    )


def save(
    path: str | Path,
    network: Network,
    optimizer: Optimizer,
    state: TrainState,
    rng: np.random.Generator,
    info: RunInfo,
    *,
    complete: bool = False,
    weights: str = "last",
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; the metadata gets format, versions, loop and RNG state."""
    path = Path(path)
    arrays = _arrays_of(network, optimizer, state)
    meta = finite_or_null(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bptrain_version": __version__,
            "numpy_version": np.__version__,
            "kernels": kernels.kind(),
            **info.to_meta(),
            "weights": weights,
            "complete": complete,
            "metrics": dict(metrics or {}),
            "train_state": state_to_dict(state),
            "history": state.history,
            "rng_state": rng.bit_generator.state,
        }
    )
    meta["digest"] = digest(meta, arrays)
    arrays[META_KEY] = np.frombuffer(json.dumps(meta, allow_nan=False).encode(), dtype=np.uint8)
    _write(path, arrays)
    return path


def _arrays_of(network: Network, optimizer: Optimizer, state: TrainState) -> dict[str, np.ndarray]:
    """The .npz entries, "<group>/<name>" (the groups of checkpoint_schema.GROUPS)."""
    arrays: dict[str, np.ndarray] = {}
    arrays.update({f"param/{k}": v for k, v in network.params.items()})
    arrays.update({f"buffer/{k}": v for k, v in network.buffers.items()})
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays.update({f"best/{k}": v for k, v in (state.best_params or {}).items()})
    arrays.update({f"ema/{k}": v for k, v in (state.ema.arrays if state.ema else {}).items()})
    if state.order is not None:
        arrays["state/order"] = state.order
    return arrays


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The arrays as an uncompressed .npz at `path`, published only once the file loads."""
    with files.atomic_write(
        path,
        overwrite=True,
        label="checkpoint",
        verify=lambda tmp: _read_back(tmp, path),
        clean_stale=True,
    ) as handle:
        np.savez(handle, **arrays)


def _read_back(tmp: Path, path: Path) -> None:
    """Never put a checkpoint under its final name that does not load (the old one stays)."""
    try:
        load(tmp)
    except CheckpointError as error:
        raise CheckpointError(
            f"not saving checkpoint {path}: the written file does not read back "
            f"({error.message.replace(f'checkpoint {tmp}: ', '').replace(str(tmp), 'it')}); "
            f"{path} is unchanged"
        ) from None


def load(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint: no pickle, sizes, format, digest, schema, finite weights."""
    path = Path(path)
    return Checkpoint(path, *checkpoint_read.read(path))
