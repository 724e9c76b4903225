"""Checkpoints: one .npz with parameters, optimizer and loop state, and a JSON metadata entry.

The only module that writes or reads the checkpoint's schema: other modules use the typed
accessors of `Checkpoint` and `RunInfo`. Writes go to a temp file beside the target, are read
back (with every check a load makes), fsynced and renamed over the target, so an existing
checkpoint is only ever replaced by one that loads. Reads never unpickle (allow_pickle=False),
check each entry's header against its size before allocating, validate every metadata field,
and compare a digest of the metadata and the arrays' layout, so a hand-edited file is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..engine.averaging import WeightAverage
from ..engine.network import Network
from ..engine.optimizers import Optimizer
from ..engine.train import TrainState, steps_per_epoch
from ..errors import CheckpointError
from ..functional import finite_or_null
from .checkpoint_schema import validate_meta

FORMAT = "bptrain-checkpoint"
FORMAT_VERSION = 2  # 2: digest, validated schema
META_KEY = "__meta__"
# Array groups inside the .npz: "<group>/<name>".
GROUPS = ("param", "buffer", "optim", "best", "ema", "state")
MAX_META_DEPTH = 32  # a config nests a few levels; far deeper JSON is not ours
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries; an empty zip


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

    def to_meta(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "seed": self.seed,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "data": {"dataset": self.dataset, "checksums": self.checksums, "folder": self.folder},
            "name": self.name,
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


def digest(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the metadata (without its digest) and each entry's name, dtype and shape."""
    layout = sorted((name, a.dtype.str, list(a.shape)) for name, a in arrays.items())
    body = {k: v for k, v in meta.items() if k != "digest"}
    text = json.dumps([body, layout], sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
    arrays: dict[str, np.ndarray] = {}
    arrays.update({f"param/{k}": v for k, v in network.params.items()})
    arrays.update({f"buffer/{k}": v for k, v in network.buffers.items()})
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays.update({f"best/{k}": v for k, v in (state.best_params or {}).items()})
    arrays.update({f"ema/{k}": v for k, v in (state.ema.arrays if state.ema else {}).items()})
    if state.order is not None:
        arrays["state/order"] = state.order
    meta = finite_or_null(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bptrain_version": __version__,
            "numpy_version": np.__version__,
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
    _write_atomically(path, arrays)
    return path


def temp_name(path: Path) -> Path:
    """A temp file beside `path` carrying our pid, so a later save can tell a dead writer's."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def remove_stale_temps(path: Path) -> None:
    """Delete temp files of earlier saves to `path` whose writer is gone (killed mid-save)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".")[0]
        if not pid.isdigit() or not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: this process writes one save at a time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="choose another --out path",
        ) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        _read_back(tmp, path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="check free space and permissions, or choose another --out",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


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


# ---------------------------------------------------------------------------------------------
# Reading


def load(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint: no pickle, sizes, format, digest, schema, finite weights."""
    path = Path(path)
    files = _read_entries(path)
    if META_KEY not in files:
        raise CheckpointError(
            f"checkpoint {path} has no {META_KEY} entry", hint="it was not written by bptrain"
        )
    meta = _parse_meta(path, files.pop(META_KEY))
    arrays = _grouped(path, files)
    if meta.get("digest") != digest(meta, files):
        raise CheckpointError(
            f"checkpoint {path}: its metadata or entries were changed after it was written "
            "(the digest does not match)",
            hint="use the file as bptrain wrote it; an edited checkpoint is not trusted",
        )
    problem = validate_meta(meta)
    if problem:
        raise CheckpointError(f"checkpoint {path}: invalid metadata: {problem}")
    _check_arrays(path, arrays)
    return Checkpoint(path, meta, arrays)


def _read_entries(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist",
            hint="give the path printed in the training summary",
        )
    try:
        with open(path, "rb") as handle:
            if handle.read(4) not in _ZIP_MAGIC:
                raise CheckpointError(
                    f"checkpoint {path} is not a readable .npz file: not a zip archive",
                    hint="a bptrain checkpoint is the .npz file that train wrote",
                )
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                return {
                    _entry_name(path, i): _read_entry(path, archive, i) for i in archive.infolist()
                }
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is not a readable .npz file ({error})",
            hint="it may be truncated or not a bptrain checkpoint",
        ) from None


def _entry_name(path: Path, info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(".npy"):
        raise CheckpointError(f"checkpoint {path} has an unexpected entry {info.filename!r}")
    return info.filename[: -len(".npy")]


def _read_entry(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy entry; its header must agree with its size before anything is allocated."""
    if info.compress_type != zipfile.ZIP_STORED:  # bptrain never compresses: no zip bombs
        raise CheckpointError(
            f"checkpoint {path}: entry {info.filename} is compressed",
            hint="bptrain writes and reads uncompressed .npz files (np.savez)",
        )
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
        header = f.tell()
    name = info.filename[: -len(".npy")]
    # Object arrays have no fixed size; allow_pickle=False below is what refuses them.
    if not dtype.hasobject:
        claimed = math.prod(shape) * dtype.itemsize
        if claimed != info.file_size - header:
            raise CheckpointError(
                f"checkpoint {path}: entry {name} claims {dtype}{list(shape)} "
                f"({claimed:,} bytes) but holds {info.file_size - header:,} bytes",
                hint="the file is damaged or was not written by bptrain",
            )
    with archive.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _parse_meta(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        meta = json.loads(raw.tobytes().decode())
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {path}: metadata is not valid JSON ({error})") from None
    if _depth(meta) > MAX_META_DEPTH:
        raise CheckpointError(f"checkpoint {path}: metadata is nested too deeply")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a bptrain checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')}, "
            f"this bptrain reads version {FORMAT_VERSION}",
            hint="format 1 predates the metadata digest: train the model again with this "
            "bptrain, or use the commit that wrote it"
            if meta.get("format_version") == 1
            else f"use the bptrain version that wrote it ({meta.get('bptrain_version')})",
        )
    return meta


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest (iteratively: the value may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)) and depth <= MAX_META_DEPTH + 1:
            deepest = max(deepest, depth)
            stack.extend(
                (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
            )
    return deepest


def _grouped(path: Path, files: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    arrays: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    for name, value in files.items():
        group, _, key = name.partition("/")
        if group not in arrays or not key:
            raise CheckpointError(f"checkpoint {path} has an unexpected entry {name!r}")
        arrays[group][key] = value
    return arrays


def _check_arrays(path: Path, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    """Weights are finite floats; the sample order is a 1-D integer array."""
    for group in ("param", "buffer", "best", "ema", "optim"):
        for key, value in arrays[group].items():
            if value.dtype.kind not in "fiu":
                raise CheckpointError(f"checkpoint {path}: {group}/{key} is not numeric")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise CheckpointError(f"checkpoint {path}: {group}/{key} holds non-finite values")
    order = arrays["state"].get("order")
    if order is not None and (order.ndim != 1 or order.dtype.kind not in "iu"):
        raise CheckpointError(
            f"checkpoint {path}: state/order is {order.dtype}{list(order.shape)}, "
            "not a list of sample indices"
        )


# ---------------------------------------------------------------------------------------------
# Restoring


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


# Weight sets besides the last ones: (array group, what it is, how to get one).
_WEIGHT_SETS = {
    "best": ("best", "best-validation", "train with data.validation > 0, or use --weights last"),
    "ema": ("ema", "averaged (EMA)", "train with train.ema set, or use --weights last"),
}


def restore_network(network: Network, ckpt: Checkpoint, weights: str = "last") -> None:
    """Load the last, best-validation or averaged parameters and buffers into a network.

    The averaged ("ema") set holds the float buffers; any other buffer comes from the last.
    """
    if weights in _WEIGHT_SETS:
        group, what, hint = _WEIGHT_SETS[weights]
        chosen = ckpt.group(group)
        if not chosen:
            raise CheckpointError(f"checkpoint {ckpt.path} holds no {what} weights", hint=hint)
        params = {k: v for k, v in chosen.items() if k in network.params}
        buffers = {k: v for k, v in chosen.items() if k not in network.params}
        if weights == "ema":
            buffers = {**ckpt.group("buffer"), **buffers}
    else:
        params, buffers = ckpt.group("param"), ckpt.group("buffer")
    _copy_into(network.params, params, "parameters", ckpt.path)
    _copy_into(network.buffers, buffers, "buffers", ckpt.path)


def restore_training(
    ckpt: Checkpoint,
    network: Network,
    optimizer: Optimizer,
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
    batch_size: int | None = None,
    ema_decay: float | None = None,
) -> TrainState:
    """Everything needed to continue exactly: weights, optimizer, generator and loop state.

    With the training `rows` and `batch_size`, the stored sample order and step are checked
    against them (a resumed run must fit the data it resumes on). With `ema_decay` the
    averaged weights continue from the stored ones; a run that had none starts its average
    from the weights it resumes with.
    """
    restore_network(network, ckpt)
    _restore_optimizer(ckpt, optimizer, network)
    try:
        rng.bit_generator.state = ckpt.meta["rng_state"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its random generator state is unusable ({error})"
        ) from None
    state = state_from_dict(ckpt.meta["train_state"], ckpt.history)
    state.order = ckpt.group("state").get("order")
    if rows is not None and batch_size is not None:
        _check_position(ckpt, state, rows, batch_size)
    best = ckpt.group("best")
    state.best_params = {k: v.copy() for k, v in best.items()} if best else None
    if ema_decay is not None:
        state.ema = WeightAverage(ema_decay, network.arrays)
        stored = ckpt.group("ema")
        if stored:
            _copy_into(state.ema.arrays, stored, "averaged weights", ckpt.path)
            state.ema.updates = int(ckpt.meta["train_state"].get("ema_updates") or 0)
    return state


def _restore_optimizer(ckpt: Checkpoint, optimizer: Optimizer, network: Network) -> None:
    """Each stored slot must be `<param>.<slot>` of this network and optimizer, shaped alike."""
    stored = ckpt.group("optim")
    steps = stored.get("steps")
    good_steps = steps is not None and steps.shape == () and steps.dtype.kind in "iu"
    problems = [] if good_steps and int(steps) >= 0 else ["steps"]
    for key, value in stored.items():
        if key == "steps":
            continue
        name, _, slot = key.rpartition(".")
        param = network.params.get(name)
        if param is None or slot not in optimizer.slots:
            problems.append(key)
        elif value.shape != param.shape or value.dtype != param.dtype:
            problems.append(f"{key} ({value.dtype}{list(value.shape)})")
    if problems:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its optimizer state does not fit {optimizer!r} "
            f"(unexpected or misshaped: {', '.join(problems)})",
            hint="was it written for another config?",
        )
    optimizer.load_state_dict(stored)


def _check_position(ckpt: Checkpoint, state: TrainState, rows: np.ndarray, batch_size: int) -> None:
    """The stored step and sample order must fit the training rows they continue on."""
    steps = steps_per_epoch(len(rows), batch_size)
    order = state.order
    fits = state.step <= steps and (state.step == 0 or order is not None)
    if order is not None:
        fits = fits and order.shape[0] == len(rows) and bool(np.isin(order, rows).all())
    if not fits:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its position (step {state.step} of {steps}) and sample "
            "order do not fit this training set",
            hint="was it written for another config or data?",
        )
