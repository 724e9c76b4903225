"""Where `graph`, `plot` and `summary` put what they make: --out FILE or stdout.

A file follows bptrain.files' rule: an existing --out is replaced only with --overwrite and
never when it is not a regular file (a folder, FIFO, device or symlink: exit 4, saying what it
is); an unwritable folder is exit 4 before any work; the bytes are written under a temporary
name, fsynced, then published, so no reader ever sees half a picture under the final name.
Binary formats go to stdout only when it is not a terminal (`bptrain graph shop --format png >
shop.png`); exit 74 is for stdout alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import console, files
from ..errors import ConfigError


def check_out(out: str | None, *, overwrite: bool, label: str = "--out") -> Path | None:
    """Before any work: refuse an --out that exists (without --overwrite), is not a regular
    file, or sits in a folder where no file can be made (all exit 4)."""
    if out is None:
        return None
    path = Path(out)
    files.check_destination(path, overwrite=overwrite, label=label)
    return path


def write(
    data: str | bytes,
    path: Path | None,
    *,
    overwrite: bool,
    what: str = "the output",
    label: str = "--out",
) -> None:
    """`data` to `path` by files.write_bytes, or to stdout when `path` is None.

    Without `overwrite` a file that appeared at `path` while the work was being done is kept
    (exit 4): the new file is published with a hard link, which never replaces one.
    """
    if path is None:
        if isinstance(data, bytes) and sys.stdout.isatty():
            raise ConfigError(
                f"{what} is binary and stdout is a terminal",
                hint="give --out FILE, or redirect stdout to a file",
            )
        console.write_stdout(data)
        return
    files.write_bytes(path, data, overwrite=overwrite, label=label)
