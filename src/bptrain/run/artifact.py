"""Where `graph`, `plot` and `summary` put what they make: --out FILE or stdout.

An existing file is replaced only with --overwrite (exit 4 otherwise, as for checkpoints),
and a file is written under a temporary name in its folder, then renamed: no reader ever
sees half a picture under the final name. Binary formats go to stdout only when it is not a
terminal (`bptrain graph shop --format png > shop.png`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from .. import console
from ..errors import CheckpointError, ConfigError, OutputError


def check_out(out: str | None, *, overwrite: bool) -> Path | None:
    """Refuse an --out that exists (without --overwrite) or is a folder, before any work."""
    if out is None:
        return None
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder", hint="give a file path")
    if path.exists() and not overwrite:
        raise CheckpointError(
            f"--out {path} already exists",
            hint="pass --overwrite to replace it, or choose another --out",
        )
    return path


def write(
    data: str | bytes, path: Path | None, *, overwrite: bool, what: str = "the output"
) -> None:
    """`data` to `path` atomically, or to stdout when `path` is None.

    Without `overwrite` the file is published with a hard link, which (unlike a rename) never
    replaces a file that appeared at `path` while the work was being done.
    """
    if path is None:
        if isinstance(data, bytes) and sys.stdout.isatty():
            raise ConfigError(
                f"{what} is binary and stdout is a terminal",
                hint="give --out FILE, or redirect stdout to a file",
            )
        console.write_stdout(data)
        return
    raw = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would make it: mkstemp's 0600 is private
        with os.fdopen(fd, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        _publish(Path(tmp), path, overwrite)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CheckpointError(
            f"--out {path} was created by someone else meanwhile",
            hint="pass --overwrite to replace it, or choose another --out",
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        check_out(str(path), overwrite=False)
        os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
