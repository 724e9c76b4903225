"""The one way bptrain writes a file: checked before the work, written whole, then published.

Every file bptrain makes (checkpoints, graph/plot/summary/export `--out`, a sweep's best.yaml,
preprocessed images, downloaded data) follows one rule:

- an existing path is replaced only when the caller allows it (`--overwrite`), and never when it
  is not a regular file: a folder, a FIFO, a device or a symlink is refused (exit 4), because
  renaming over it would replace the device node or the link itself (`/dev/full`, `/dev/stdout`);
- the bytes go to a hidden temporary file in the same folder, are fsynced, and only then get the
  final name (a hard link when nothing may be replaced, a rename otherwise), so no reader ever
  sees a 0-byte or half-written file under a final name;
- an unwritable folder is found by `check_destination` before any work, and every write error is
  exit 4 with the path and the reason (exit 74 is for stdout alone).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import DestinationError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(path: Path) -> str | None:
    """None when nothing is at `path`, "a regular file", or what else it is ("a FIFO", ...)."""
    try:
        mode = os.lstat(path).st_mode  # lstat: a symlink is judged itself, not its target
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise DestinationError(f"cannot look at {path}: {error.strerror or error}") from None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file"


def refuse_special(path: Path, *, label: str = "--out") -> None:
    """Exit 4 when `path` exists and is not a regular file (with or without --overwrite)."""
    kind = kind_of(path)
    if kind is not None and kind != "a regular file":
        hint = "bptrain writes regular files only; choose another path"
        if kind == "a symlink":
            hint = f"give the path it points to ({os.path.realpath(path)}), or another path"
        raise DestinationError(f"{label} {path} is {kind}, not a regular file", hint=hint)


def check_destination(path: Path, *, overwrite: bool, label: str = "--out") -> None:
    """Before any work: refuse what must not be replaced, and make sure the folder is writable."""
    refuse_special(path, label=label)
    if kind_of(path) is not None and not overwrite:
        raise DestinationError(
            f"{label} {path} already exists",
            hint=f"pass --overwrite to replace it, or choose another {label}",
        )
    check_folder(path.parent, label=label, target=path)


def check_folder(folder: Path, *, label: str = "--out", target: Path | None = None) -> None:
    """Create `folder` if needed and prove a file can be made in it (exit 4 with the reason)."""
    where = target if target is not None else folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # One byte, fsynced: making an empty file needs an inode only, so a full disk would pass.
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0")
            probe.flush()
            os.fsync(probe.fileno())
        _refuse_full(folder)
    except OSError as error:
        raise DestinationError(
            f"cannot write {label} {where}: {error.strerror or error}",
            hint="choose another path, or fix the folder's permissions or free space",
        ) from None


def _refuse_full(folder: Path) -> None:
    """A file system without one free block cannot take the file (some accept the probe byte
    into a block they already hold)."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return  # the write itself will say what is wrong
    if fs.f_bfree == 0 and fs.f_blocks > 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextlib.contextmanager
def atomic_write(
    path: Path,
    *,
    overwrite: bool,
    label: str = "--out",
    verify: Callable[[Path], object] | None = None,
    clean_stale: bool = False,
) -> Iterator[BinaryIO]:
    """Yield a binary file; on a clean exit it is fsynced, verified and published as `path`.

    `verify(tmp)` may raise to keep the final name unchanged (a checkpoint that does not read
    back). Any OSError, while writing or publishing, is a DestinationError naming `path`.
    `clean_stale` first removes temporary files that killed writers left beside `path` (large
    ones: checkpoints); it scans the folder, so callers writing many small files leave it off.
    """
    path = Path(path)
    refuse_special(path, label=label)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            remove_stale_temps(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    except OSError as error:
        raise _write_error(path, label, error) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        _publish(tmp, path, overwrite=overwrite, label=label)
        fsync_dir(path.parent)
    except OSError as error:
        raise _write_error(path, label, error) from None
    finally:
        # Also on KeyboardInterrupt: the temporary file goes, the interrupt goes on.
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes(path: Path, data: bytes | str, *, overwrite: bool, label: str = "--out") -> None:
    """`data` to `path` by `atomic_write`."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_write(path, overwrite=overwrite, label=label) as handle:
        handle.write(raw)


def temp_name(path: Path) -> Path:
    """A hidden temporary name beside `path` that carries our pid (see remove_stale_temps)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temps(path: Path) -> None:
    """Delete temporary files of earlier writes to `path` whose writer is gone (killed)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".")[0]
        if not pid.isdigit() or (int(pid) != os.getpid() and not pid_alive(int(pid))):
            with contextlib.suppress(OSError):
                tmp.unlink()


def pid_alive(pid: object) -> bool:
    """Whether a process with this pid runs on this machine (another user's counts as alive)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system can fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, path: Path, *, overwrite: bool, label: str) -> None:
    refuse_special(path, label=label)  # again: something may have appeared during the work
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # unlike a rename, a link never replaces what appeared meanwhile
    except FileExistsError:
        raise DestinationError(
            f"{label} {path} was created by someone else meanwhile",
            hint=f"pass --overwrite to replace it, or choose another {label}",
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        if kind_of(path) is not None:
            raise DestinationError(
                f"{label} {path} was created by someone else meanwhile",
                hint=f"pass --overwrite to replace it, or choose another {label}",
            ) from None
        os.replace(tmp, path)


def _write_error(path: Path, label: str, error: OSError) -> DestinationError:
    return DestinationError(
        f"cannot write {label} {path}: {error.strerror or error}",
        hint="check free space and permissions, or choose another path",
    )
