"""Where users' images come from: paths, folders, stdin ("-"), and lists of paths.

read_inputs() turns the inputs a user named into Items (decode.py reads each one's bytes), in
order; an input that fails yields one InputError and the others go on. A folder is searched for
the suffixes Pillow can open, and .npy, in sorted order, without hidden names; its FIFOs,
sockets and devices are skipped with a warning (reading one could block forever or never end).
A path named explicitly is opened as it is, as Unix tools do: `<(cat x.png)` works.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from ..console import shown_name
from ..files import kind_of
from .decode import MAX_BYTES, InputError, Item, sniff, suffixes

log = logging.getLogger("bptrain.predict")


def read_inputs(
    inputs: Sequence[str], *, recursive: bool = False, stdin: BinaryIO | None = None
) -> Iterator[Item | InputError]:
    """Every image of every input, in order; a failing input yields one InputError instead."""
    for name in inputs:
        if name != "-" and name and os.path.isdir(name):
            yield from _read_folder(Path(name), recursive)
            continue
        try:
            items = _read_stdin(stdin) if name == "-" else _read_path(name)
        except InputError as exc:
            yield exc
            continue
        yield from items


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image and .npy files of a folder in sorted order (no hidden names); InputError."""
    files, errors = _list_images(folder, recursive)
    if errors:
        raise errors[0]
    return files


def paths_from_list(data: bytes, *, null: bool = False) -> tuple[str, ...]:
    """The paths of a --files-from list: one per line, or NUL-separated (`find -print0`).

    A list holding a NUL is NUL-separated even without `null`, since no path can hold one.
    Lines lose surrounding blanks (and a CRLF's CR) and blank lines are dropped; NUL-separated
    names are kept exactly (that is what -print0 is for), only empty ones are dropped. Bytes
    become names as os.fsdecode makes them, so names that are not UTF-8 work.
    """
    if null or b"\0" in data:
        return tuple(os.fsdecode(name) for name in data.split(b"\0") if name)
    lines = (line.strip() for line in data.splitlines())
    return tuple(os.fsdecode(line) for line in lines if line)


def _read_path(name: str) -> Iterable[Item]:
    if not name:
        raise InputError(repr(name), "an empty path")
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # read(), not stat(): pipes and /dev/fd/N have no size
    except OSError as exc:
        raise InputError(name, os_reason(exc)) from None
    if len(data) > MAX_BYTES:
        raise InputError(name, f"larger than the {MAX_BYTES >> 20} MiB limit for one input")
    return sniff(data, name)


def _read_stdin(stdin: BinaryIO | None) -> Iterable[Item]:
    if stdin is None:
        raise InputError("-", "standard input is not available here")
    data = stdin.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InputError("-", f"larger than the {MAX_BYTES >> 20} MiB limit for one input")
    return sniff(data, "-")


def _read_folder(folder: Path, recursive: bool) -> Iterator[Item | InputError]:
    files, errors = _list_images(folder, recursive)
    yield from errors
    if not files and not errors:
        where = "in it or below" if recursive else "in it (--recursive looks in subfolders)"
        yield InputError(str(folder), f"no image or .npy files {where}")
    for path in files:
        try:
            items = _read_path(str(path))
        except InputError as exc:
            yield exc
            continue
        yield from items


def _list_images(folder: Path, recursive: bool) -> tuple[list[Path], list[InputError]]:
    errors: list[InputError] = []

    def failed(exc: OSError) -> None:
        errors.append(InputError(exc.filename or str(folder), os_reason(exc, "cannot list")))

    files, known = [], suffixes()
    for root, dirs, names in os.walk(folder, onerror=failed):  # symlinked folders not followed
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        files += [Path(root, n) for n in names if _is_image_name(n, known)]
    files.sort(key=lambda path: path.relative_to(folder).parts)
    return [path for path in files if _is_readable_kind(path)], errors


def _is_image_name(name: str, known: frozenset[str]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in known


def _is_readable_kind(path: Path) -> bool:
    """False, with a warning, for a FIFO, socket or device: opening one may block forever."""
    try:
        mode = os.stat(path).st_mode  # follows a symlink: what would be read
    except OSError:
        return True  # a dangling symlink, say: reading it reports why, as one InputError
    if stat.S_ISREG(mode):
        return True
    kind = kind_of(Path(os.path.realpath(path)))
    log.warning(f"skipping {shown_name(path)}: {kind}, not a regular file")
    return False


def os_reason(exc: OSError, verb: str = "cannot read") -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, PermissionError):
        return f"{verb}: permission denied"
    return f"{verb} ({exc.strerror or exc})"
