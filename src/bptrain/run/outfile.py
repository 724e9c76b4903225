"""Where a run writes its checkpoint: refuse to replace, lock against a second writer, unique names.

The checks are bptrain.files' (special files refused, the folder proven writable, exit 4);
what is a checkpoint's own is the lock and the default name.

From before its data is loaded until it ends, a run holds an advisory lock on `.NAME.lock`
beside its checkpoint (removed when it ends): a second process writing the same file fails at
once (exit 4) instead of silently overwriting it. Default names get a counter when the second
is taken, reserved with O_EXCL so two runs started in the same second never share a file.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .. import files
from ..errors import CheckpointError, DestinationError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (O_EXCL reservations still hold)
    fcntl = None  # type: ignore[assignment]


def lock_path(path: Path) -> Path:
    """The lock file beside the checkpoint (symlinks resolved: one file, one lock)."""
    real = path.resolve()
    return real.with_name(f".{real.name}.lock")


def check_writable(path: Path, *, label: str = "--out") -> None:
    """Before any work: `path` is not a special file and a checkpoint can be made beside it."""
    files.refuse_special(path, label=label)
    files.check_folder(path.parent, label="checkpoint", target=path)


def refuse_existing(path: Path, *, overwrite: bool, resuming: Path | None) -> None:
    """A new run never replaces a file unless asked to; resuming a file may write it again.

    Whatever is not a regular file (a folder, FIFO, device or symlink) is refused either way.
    """
    label = "--resume" if resuming is not None and path == resuming else "--out"
    files.refuse_special(path, label=label)
    if files.kind_of(path) is None or overwrite:
        return
    if resuming is not None and path.resolve() == resuming.resolve():
        return
    raise DestinationError(
        f"--out {path} already exists",
        hint="pass --overwrite to replace it, --resume it to continue that run, "
        "or choose another --out",
    )


@contextlib.contextmanager
def locked(path: Path, *, label: str = "--out") -> Iterator[Path]:
    """Hold the advisory lock of `path` for the duration (CheckpointError when it is taken)."""
    check_writable(path, label=label)
    held = _take(path, exclusive=False)
    try:
        yield path
    finally:
        _release(*held)


@contextlib.contextmanager
def reserved_default(folder: Path, stem: str) -> Iterator[Path]:
    """A new `folder/stem-<time>[-N].npz` no other run has or is writing, locked."""
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(folder / f"{base}.npz")
    for n in range(1, 10_000):
        path = folder / (f"{base}.npz" if n == 1 else f"{base}-{n}.npz")
        if path.exists():
            continue
        try:
            held = _take(path, exclusive=True)
        except FileExistsError:
            continue  # reserved by a run started in the same second
        try:
            yield path
        finally:
            _release(*held)
        return
    raise CheckpointError(f"no free checkpoint name {base}-N.npz in {folder}")


def _take(path: Path, *, exclusive: bool) -> tuple[int, Path]:
    """Lock `path`'s lock file: (descriptor, lock file); exclusive: the file must be new.

    The last holder removes the lock file, so none pile up beside runs. That is safe because a
    holder checks, once it has the lock, that the file it locked is still the one under the
    lock's name; a process that opened it just before its removal tries again.
    """
    lock = lock_path(path)
    for _ in range(100):
        fd = _open_lock(lock, exclusive=exclusive)
        try:
            _acquire(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock):
            _sign(fd, lock, path)
            return fd, lock
        os.close(fd)
    raise CheckpointError(f"cannot lock {lock}: it keeps being replaced")


def _sign(fd: int, lock: Path, path: Path) -> None:
    """Write our pid into the lock we hold (a second run names us); on a full disk this is the
    first write that fails, before any work: exit 4 naming the checkpoint, and no lock left."""
    if fcntl is None:
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError as error:
        _release(fd, lock)
        raise DestinationError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="check free space and permissions, or choose another path",
        ) from None


def _release(fd: int, lock: Path) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()  # while still holding it (see _take)
    os.close(fd)


def _same_file(fd: int, lock: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        return False


def _open_lock(lock: Path, *, exclusive: bool) -> int:
    flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else 0)
    try:
        return os.open(lock, flags, 0o666)
    except FileExistsError:
        raise
    except OSError as error:
        raise CheckpointError(
            f"cannot lock {lock}: {error.strerror or error}", hint="choose another --out path"
        ) from None


def _acquire(fd: int, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise CheckpointError(
            f"{path} is being written by another bptrain process (pid {holder})",
            hint="wait for it to finish, or choose another --out",
        ) from None
