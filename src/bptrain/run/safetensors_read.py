"""Reading a safetensors file as untrusted input, with NumPy alone.

The format (https://huggingface.co/docs/safetensors) is 8 bytes of header length
(little-endian), a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then
the tensors' bytes. It is read here rather than through the `safetensors` package so that
`--init-from` needs no extra, and so that every header field is checked, and a half-precision
or integer tensor is named, before an array is made. A file whose header is not JSON is not a
safetensors file (exit 2); one whose header is broken or whose data is cut short is damaged
(exit 4, as a damaged checkpoint).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError

MAX_HEADER = 100_000_000  # the safetensors library's own limit
# safetensors dtype -> (bytes per element, the NumPy dtype bptrain reads it as, or None).
DTYPES: dict[str, tuple[int, str | None]] = {
    "F32": (4, "<f4"),
    "F64": (8, "<f8"),  # cast to float32 by the caller (see init_from._checked)
    "I64": (8, "<i8"),  # BatchNorm's num_batches_tracked, ignored by the caller
    "I32": (4, "<i4"),
    "F16": (2, "<f2"),
    "BF16": (2, None),
    "F8_E4M3": (1, None),
    "F8_E5M2": (1, None),
    "I16": (2, "<i2"),
    "I8": (1, "i1"),
    "U8": (1, "u1"),
    "U16": (2, "<u2"),
    "U32": (4, "<u4"),
    "U64": (8, "<u8"),
    "BOOL": (1, "?"),
}
READ_AS_FLOAT = ("F32", "F64")
COUNTER = ".num_batches_tracked"


def parse(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes: float32/float64 weights, integer counters."""
    header, data = _header(path, raw)
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, begin = _entry(path, name, entry, len(data))
        if dtype not in READ_AS_FLOAT and not (name.endswith(COUNTER) and dtype in ("I64", "I32")):
            raise ConfigError(
                f"--init-from {path}: tensor {name} is {dtype}; bptrain trains in float32 "
                "(float64 is cast)",
                hint="save the model in float32 (model.float() in PyTorch) and try again",
            )
        values = np.frombuffer(data, dtype=DTYPES[dtype][1], count=math.prod(shape), offset=begin)
        tensors[name] = values.reshape(shape).astype(values.dtype.newbyteorder("="))
    return tensors


def _header(path: Path, raw: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0
    if len(raw) < 9 or raw[8:9] != b"{":
        raise ConfigError(
            f"--init-from {path} is neither a bptrain checkpoint (.npz) nor a safetensors file",
            hint="give a checkpoint that train wrote, or a state_dict saved with "
            "safetensors.torch.save_file",
        )
    if size > MAX_HEADER or 8 + size > len(raw):
        raise _damaged(path, f"its header claims {size:,} bytes of {len(raw) - 8:,}")
    try:
        header = json.loads(raw[8 : 8 + size])
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise _damaged(path, f"its header is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a mapping")
    return header, raw[8 + size :]


def _entry(path: Path, name: str, entry: Any, available: int) -> tuple[str, tuple[int, ...], int]:
    """(dtype, shape, where its data begins) of one header entry, each field checked."""
    try:
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        itemsize = DTYPES[dtype][0] if dtype in DTYPES else 1  # unknown: refused by dtype
        shape = tuple(int(d) for d in shape if isinstance(d, int) and not isinstance(d, bool))
        begin, end = (int(o) for o in offsets if isinstance(o, int) and not isinstance(o, bool))
    except (KeyError, TypeError, ValueError):
        raise _damaged(path, f"tensor {name!r} lacks a dtype, shape or data_offsets") from None
    if len(shape) != len(entry["shape"]) or min(shape, default=0) < 0:
        raise _damaged(path, f"tensor {name!r} has an invalid shape {entry['shape']!r}")
    if dtype not in DTYPES:
        return dtype, shape, begin  # the caller names it as a dtype bptrain cannot use
    if not 0 <= begin <= end <= available or end - begin != math.prod(shape) * itemsize:
        raise _damaged(
            path,
            f"tensor {name} ({dtype}{list(shape)}) claims bytes {begin}..{end} of {available:,}",
        )
    return dtype, shape, begin


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"--init-from {path} is a damaged safetensors file ({why})",
        hint="it may be truncated; write it again",
    )
