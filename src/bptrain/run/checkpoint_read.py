"""Reading a checkpoint file as untrusted input: never unpickle, check before allocating.

Reads never unpickle (allow_pickle=False), check each entry's header against its size before
allocating, refuse compressed entries, validate every metadata field against the schema, and
compare the digest of the metadata and the arrays' layout, so a hand-edited file is refused.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..errors import CheckpointError
from .checkpoint_schema import FORMAT, FORMAT_VERSION, GROUPS, META_KEY, digest, validate_meta

MAX_META_DEPTH = 32  # a config nests a few levels; far deeper JSON is not ours
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries; an empty zip

Groups = dict[str, dict[str, np.ndarray]]


def read(path: Path) -> tuple[dict[str, Any], Groups]:
    """(metadata, arrays by group) of a checkpoint: no pickle, sizes, format, digest, schema."""
    entries = _read_entries(path)
    if META_KEY not in entries:
        raise CheckpointError(
            f"checkpoint {path} has no {META_KEY} entry", hint="it was not written by bptrain"
        )
    meta = _parse_meta(path, entries.pop(META_KEY))
    arrays = _grouped(path, entries)
    if meta.get("digest") != digest(meta, entries):
        raise CheckpointError(
            f"checkpoint {path}: its metadata or entries were changed after it was written "
            "(the digest does not match)",
            hint="use the file as bptrain wrote it; an edited checkpoint is not trusted",
        )
    problem = validate_meta(meta)
    if problem:
        raise CheckpointError(f"checkpoint {path}: invalid metadata: {problem}")
    _check_arrays(path, arrays)
    return meta, arrays


def _read_entries(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        kind = files.kind_of(path)  # a FIFO would block a reader: say what it is instead
        raise CheckpointError(
            f"checkpoint {path} does not exist"
            if kind in (None, "a symlink")  # nothing, or a link to nothing
            else f"checkpoint {path} is {kind}, not a checkpoint file",
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
