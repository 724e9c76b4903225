"""IDX parsing and verification: header fields, payload size, labels and raw SHA-256."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from .datasets import MAX_IDX_BYTES, FileSpec

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
MAX_SIDE = 1024  # largest image side accepted for the `idx` dataset
_CHUNK = 16 << 20  # read payloads in pieces so memory follows the data, not the header's claim


class CorruptFileError(DataError):
    """A file that exists but is not the IDX data it should be."""

    def __init__(self, path: Path | str, reason: str) -> None:
        # No "delete it": the file may sit in a folder that belongs to the user, not to bptrain.
        super().__init__(f"{path}: {reason}", hint="replace it with a good copy")
        self.path = Path(path)
        self.reason = reason


class ChecksumMismatch(CorruptFileError):
    """A well-formed IDX file with another raw SHA-256 than expected (maybe another dataset's)."""

    def __init__(self, path: Path | str, sha256: str, expected: str) -> None:
        # 16 hex digits tell two files apart and keep the message short.
        reason = f"SHA-256 of the decompressed data is {sha256[:16]}..."
        reason += f", expected {expected[:16]}..."
        super().__init__(path, reason)
        self.sha256 = sha256


@dataclass(frozen=True)
class IdxFile:
    """A verified IDX file: its dims, raw SHA-256 and uint8 payload shaped like the dims."""

    path: Path
    dims: tuple[int, ...]
    sha256: str
    data: np.ndarray


@dataclass(frozen=True)
class Expect:
    """What a file must look like: its spec plus the dataset's image shape and class count."""

    spec: FileSpec
    image_shape: tuple[int, int] | None = None
    num_classes: int | None = None
    max_bytes: int = MAX_IDX_BYTES


def read_idx(path: Path, expect: Expect, *, gzipped: bool | None = None) -> IdxFile:
    """Read and verify one IDX file (gz or raw); CorruptFileError naming the file on any fault.

    The SHA-256 is always computed from the bytes read (~0.05 s for 47 MB): a file changed in
    place with its size and mtime kept must never pass as the file it replaced.
    """
    gzipped = path.name.endswith(".gz") if gzipped is None else gzipped
    try:
        with open(path, "rb") as f, ExitStack() as stack:
            stream = _open_stream(f, path, stack) if gzipped else f
            stat = None if gzipped else os.fstat(f.fileno())
            return _read(stream, path, expect, stat)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        # A truncated stream, a CRC/length mismatch or garbage inside the deflate data.
        raise CorruptFileError(path, f"damaged gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read(stream: BinaryIO, path: Path, expect: Expect, stat: os.stat_result | None) -> IdxFile:
    header, dims = _read_header(stream, path, expect)
    payload = math.prod(dims)
    _check_total(path, expect, len(header) + payload, stat)
    body = _read_payload(stream, path, payload)
    if stream.read(1):
        raise CorruptFileError(path, f"extra bytes after the {payload}-byte payload")
    sha256 = hashlib.sha256(header + body).hexdigest()
    if expect.spec.sha256 and sha256 != expect.spec.sha256:
        raise ChecksumMismatch(path, sha256, expect.spec.sha256)
    data = np.frombuffer(body, dtype=np.uint8).reshape(dims)
    if len(dims) == 1:
        _check_labels(path, data, expect.num_classes)
    return IdxFile(path, dims, sha256, data)


def _open_stream(f: BinaryIO, path: Path, stack: ExitStack) -> BinaryIO:
    head = f.read(64)
    if head[:2] != GZIP_MAGIC:
        raise CorruptFileError(path, f"not a gzip file ({describe_start(head)})")
    f.seek(0)
    stream = stack.enter_context(gzip.GzipFile(fileobj=f, mode="rb"))
    # A server that gzips a .gz again (Content-Encoding: gzip) leaves one more layer to peel.
    if stream.peek(2)[:2] == GZIP_MAGIC:
        stream = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def describe_start(head: bytes) -> str:
    """A short description of a file's first bytes, for error messages."""
    if not head:
        return "the file is empty"
    if head.lstrip()[:1] == b"<":
        return "it starts with '<': an HTML or XML page, probably an error page saved as data"
    if head[:3] == b"\0\0\x08":
        return "it is uncompressed IDX data: drop the .gz suffix from its name"
    return f"it starts with bytes {head[:4].hex(' ')}"


def _read_header(stream: BinaryIO, path: Path, expect: Expect) -> tuple[bytes, tuple[int, ...]]:
    magic = stream.read(4)
    if len(magic) < 4:
        raise CorruptFileError(path, f"truncated IDX header ({len(magic)} of 4 magic bytes)")
    if magic[:2] != b"\0\0":
        raise CorruptFileError(path, f"bad IDX magic 0x{magic.hex()} ({describe_start(magic)})")
    if magic[2] != UBYTE:
        reason = f"IDX type code 0x{magic[2]:02x}, expected 0x08 (unsigned byte)"
        raise CorruptFileError(path, reason)
    ndim = 3 if expect.spec.is_images else 1
    if magic[3] != ndim:
        raise CorruptFileError(path, f"IDX header has {magic[3]} dims, expected {ndim}")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise CorruptFileError(path, "truncated IDX header (dims missing)")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    _check_dims(path, dims, expect)
    return magic + raw_dims, dims


def _check_dims(path: Path, dims: tuple[int, ...], expect: Expect) -> None:
    if dims[0] == 0:
        raise CorruptFileError(path, "IDX header says the file holds 0 items")
    if len(dims) == 1:
        return
    shape = dims[1:]
    if expect.image_shape is not None and shape != expect.image_shape:
        want = "x".join(map(str, expect.image_shape))
        raise CorruptFileError(path, f"images are {shape[0]}x{shape[1]}, expected {want}")
    if not all(1 <= side <= MAX_SIDE for side in shape):
        raise CorruptFileError(path, f"implausible image size {shape[0]}x{shape[1]}")


def _check_total(path: Path, expect: Expect, total: int, stat: os.stat_result | None) -> None:
    # Every size check happens before the payload is read, so a bad header costs nothing.
    if expect.spec.size is not None and total != expect.spec.size:
        reason = f"IDX header implies {total} bytes, expected {expect.spec.size}"
        raise CorruptFileError(path, reason)
    if total > expect.max_bytes:
        raise CorruptFileError(path, f"IDX header implies {total} bytes, over the limit")
    if stat is not None and stat.st_size != total:
        what = "truncated" if stat.st_size < total else "extra bytes"
        reason = f"{what}: file is {stat.st_size} bytes, IDX header implies {total}"
        raise CorruptFileError(path, reason)


def _read_payload(stream: BinaryIO, path: Path, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            got = size - remaining
            raise CorruptFileError(path, f"truncated: payload ends after {got} of {size} bytes")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _check_labels(path: Path, labels: np.ndarray, num_classes: int | None) -> None:
    if num_classes is None or labels.size == 0:
        return
    if int(labels.max()) >= num_classes:
        index = int(np.argmax(labels >= num_classes))
        reason = f"label {labels[index]} at index {index} out of range 0..{num_classes - 1}"
        raise CorruptFileError(path, reason)
