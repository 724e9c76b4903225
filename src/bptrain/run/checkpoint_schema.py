"""What a checkpoint file holds: its format marks, the digest that seals it, and the schema
of its metadata (every field, its type and range, checked on every load).

A checkpoint is one .npz: arrays named "<group>/<name>" plus a JSON metadata entry. Its JSON
can be damaged or edited; each problem found here becomes one clear CheckpointError (exit 4)
instead of a crash deep inside a resume or an evaluation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..registry import FILE_TYPE

FORMAT = "bptrain-checkpoint"
FORMAT_VERSION = 2  # 2: digest, validated schema
META_KEY = "__meta__"
# Array groups inside the .npz: "<group>/<name>".
GROUPS = ("param", "buffer", "optim", "best", "ema", "state")


def digest(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the metadata (without its digest) and each entry's name, dtype and shape."""
    layout = sorted((name, a.dtype.str, list(a.shape)) for name, a in arrays.items())
    body = {k: v for k, v in meta.items() if k != "digest"}
    text = json.dumps([body, layout], sort_keys=True, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


Check = Callable[[Any], str | None]  # None when the value is fine, else what it should be


def _integer(minimum: int = 0, maximum: int = 2**63 - 1) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok and minimum <= value <= maximum else f"an integer >= {minimum}"

    return check


def _number(minimum: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and (minimum is None or value >= minimum):
            return None
        return "a number" if minimum is None else f"a number >= {minimum:g}"

    return check


def _fraction(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "a fraction from 0 to 1"


def _of_type(kind: type, name: str) -> Check:
    return lambda value: None if isinstance(value, kind) else name


def _optional(check: Check) -> Check:
    def optional(value: Any) -> str | None:
        problem = check(value) if value is not None else None
        return f"{problem} or null" if problem else None

    return optional


def _one_of(*choices: Any) -> Check:
    return lambda value: None if value in choices else "one of " + ", ".join(map(repr, choices))


def _list_of(check: Check, name: str, nonempty: bool = False) -> Check:
    def check_list(value: Any) -> str | None:
        good = isinstance(value, list) and (value or not nonempty)
        return None if good and all(check(v) is None for v in value) else name

    return check_list


def _mapping_of(check: Check, name: str) -> Check:
    def check_mapping(value: Any) -> str | None:
        good = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return None if good and all(check(v) is None for v in value.values()) else name

    return check_mapping


_STRING = _of_type(str, "a string")
_BOOL = _of_type(bool, "true or false")
_MAPPING = _of_type(dict, "a mapping")
_FRACTION_OR_NULL = _optional(_fraction)
_LOSS_OR_NULL = _optional(_number(0.0))
_COUNT = _integer()

TRAIN_STATE: dict[str, Any] = {
    "epoch": _COUNT,
    "step": _COUNT,
    "loss_sum": _number(0.0),
    "correct": _COUNT,
    "seen": _COUNT,
    "seconds": _number(0.0),
    "best_val_accuracy": _FRACTION_OR_NULL,
    "best_epoch": _optional(_COUNT),
    "stale_epochs": _COUNT,
    "stopped_early": _BOOL,
    "ema_updates": _optional(_COUNT),
    "wall_seconds": _number(0.0),
}
EPOCH_RECORD: dict[str, Any] = {
    "epoch": _integer(1),
    "train_loss": _LOSS_OR_NULL,
    "train_accuracy": _FRACTION_OR_NULL,
    "val_loss": _LOSS_OR_NULL,
    "val_accuracy": _FRACTION_OR_NULL,
    "lr": _optional(_number(1e-300)),
    "seconds": _number(0.0),
    "samples_per_second": _optional(_number(0.0)),
    "wall_seconds": _number(0.0),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_SOURCE = ("type", "file", "sha256")
_PLUGIN_SOURCE = ("type", "entry_point", "distribution", "version")


def _layer_source(value: Any) -> bool:
    """One own layer's code: a file's {type, file, sha256} (the file's own name, the one in
    the type) or an installed package's {type, entry_point, distribution, version}."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return False
    if sorted(value) == sorted(_PLUGIN_SOURCE):
        return True
    match = FILE_TYPE.match(value.get("type", ""))
    return (
        sorted(value) == sorted(_FILE_SOURCE)
        and match is not None
        and value["file"] == match["file"].rsplit("/", 1)[-1]
        and _SHA256.match(value["sha256"]) is not None
    )


def _layer_sources(value: Any) -> str | None:
    good = isinstance(value, list) and all(map(_layer_source, value))
    types = [source["type"] for source in value] if good else []
    if good and len(set(types)) == len(types):
        return None
    return (
        "a list of {type, file, sha256} or {type, entry_point, distribution, version}, one per type"
    )


# Keys added after checkpoints were first written: older files lack them and still load.
NEWER_KEYS = frozenset({"ema_updates", "wall_seconds", "kernels", "init_from", "layer_sources"})
DATA: dict[str, Any] = {
    "dataset": _STRING,
    "checksums": _mapping_of(_STRING, "a mapping of file names to SHA-256 strings"),
    "folder": _optional(_STRING),
}


def _init_from(value: Any) -> str | None:
    """train --init-from's record: exactly a file name, its SHA-256 and the file's format."""
    ok = (
        isinstance(value, dict)
        and set(value) == {"file", "sha256", "format"}
        and isinstance(value["file"], str)
        and 0 < len(value["file"]) <= 4096
        and isinstance(value["sha256"], str)
        and re.fullmatch("[0-9a-f]{64}", value["sha256"]) is not None
        and value["format"] in ("bptrain-checkpoint", "safetensors")
    )
    return None if ok else "a mapping of file, sha256 (64 hex digits) and format"


META: dict[str, Any] = {
    "format": _STRING,
    "format_version": _COUNT,
    "bptrain_version": _STRING,
    "numpy_version": _STRING,
    "kernels": _one_of("numba", "numpy"),  # whose rounding the layers' passes had
    "config": _MAPPING,
    "seed": _COUNT,
    "input_shape": _list_of(_integer(1, 2**31), "a list of sizes >= 1", nonempty=True),
    "num_classes": _integer(1, 2**31),
    "class_names": _list_of(_STRING, "a list of strings"),
    "data": DATA,
    "weights": _one_of("last", "best", "ema"),
    "complete": _BOOL,
    "metrics": _MAPPING,
    "train_state": TRAIN_STATE,
    "history": [EPOCH_RECORD],
    "rng_state": _MAPPING,
    "layer_sources": _layer_sources,  # runs with their own layers (custom.registration)
    "digest": _STRING,
    "init_from": _init_from,  # only in runs started with train --init-from
}


def _problems(value: Any, schema: Any, path: str) -> list[str]:
    """What is wrong with `value` against `schema` (a check, a mapping, or [item schema])."""
    if isinstance(schema, Mapping):
        if not isinstance(value, dict):
            return [f"{path or 'metadata'} must be a mapping"]
        found = [
            f"{path}{key}: missing" for key in schema if key not in value and key not in NEWER_KEYS
        ]
        for key, sub in schema.items():
            if key in value:
                found += _problems(value[key], sub, f"{path}{key}.")
        return found
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path.rstrip('.')} must be a list"]
        return [
            p for i, item in enumerate(value) for p in _problems(item, schema[0], f"{path}[{i}].")
        ]
    problem = schema(value)
    return [f"{path.rstrip('.')} must be {problem}, got {value!r:.60}"] if problem else []


def _consistency(meta: dict[str, Any]) -> list[str]:
    """Relations between fields that each look fine alone."""
    state, found = meta["train_state"], []
    config = meta["config"]
    if config.get("seed") != meta["seed"]:
        found.append("seed differs from the config's seed")
    data = config.get("data")
    if not isinstance(data, dict) or data.get("dataset", "mnist") != meta["data"]["dataset"]:
        found.append("data.dataset differs from the config's dataset")
    if len(meta["class_names"]) != meta["num_classes"]:
        found.append("class_names must name num_classes classes")
    if len(meta["history"]) != state["epoch"]:
        found.append("history must hold one record per completed epoch")
    elif [r["epoch"] for r in meta["history"]] != list(range(1, state["epoch"] + 1)):
        found.append("history must number its epochs 1, 2, ...")
    if state["best_epoch"] is not None and state["best_epoch"] > state["epoch"]:
        found.append("train_state.best_epoch is after the last epoch")
    if state["correct"] > state["seen"]:
        found.append("train_state.correct is larger than train_state.seen")
    if state["step"] == 0 and (state["seen"] or state["correct"]):
        found.append("train_state counts samples of an epoch that has not started")
    if state["stale_epochs"] > state["epoch"]:
        found.append("train_state.stale_epochs is larger than train_state.epoch")
    if (state["best_epoch"] is None) != (state["best_val_accuracy"] is None):
        found.append("train_state.best_epoch and best_val_accuracy must be set together")
    return found


def validate_meta(meta: dict[str, Any]) -> str | None:
    """The first few problems of a checkpoint's metadata, or None when it is sound."""
    found = _problems(meta, META, "")
    if not found:
        found = _consistency(meta)
    return "; ".join(found[:3]) if found else None
