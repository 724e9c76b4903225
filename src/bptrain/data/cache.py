"""Cache folders: where each dataset lives, the download lock and the verification stamps."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .datasets import FILE_NAMES, DatasetInfo, get_info
from .env import ENV_DATA_DIR

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; unique temp names + os.replace still hold
    fcntl = None  # type: ignore[assignment]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Location:
    """A dataset folder; owned=False is a user's or the system's folder, never written to."""

    folder: Path
    owned: bool


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The cache root: data_dir > BPTRAIN_DATA_DIR > $XDG_CACHE_HOME/bptrain > ~/.cache/bptrain."""
    if data_dir is not None and str(data_dir):
        return _absolute(data_dir)
    if os.environ.get(ENV_DATA_DIR):
        return _absolute(os.environ[ENV_DATA_DIR])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        return Path(xdg) / "bptrain"
    try:
        return Path.home() / ".cache" / "bptrain"
    except RuntimeError:
        raise DataError(
            "no home folder to put the data cache in", hint=f"set {ENV_DATA_DIR} or --data-dir"
        ) from None


def dataset_folder(dataset: str | DatasetInfo, data_dir: PathLike | None = None) -> Location:
    """Where a dataset lives: data_dir itself when it holds the four files, else ROOT/<name>."""
    info = get_info(dataset)
    if data_dir is not None and str(data_dir):
        given = _absolute(data_dir)
        if holds_all(given):
            return Location(given, owned=False)
    return Location(resolve_data_dir(data_dir) / info.name, owned=True)


def _absolute(path: PathLike) -> Path:
    return Path(path).expanduser().absolute()


def candidates(folder: Path, name: str) -> list[Path]:
    """The existing copies of one IDX file in a folder: uncompressed first (faster), then .gz."""
    return [path for path in (folder / name, folder / f"{name}.gz") if path.is_file()]


def holds_all(folder: Path) -> bool:
    """True when the folder has every one of the four files, gz or raw."""
    return all(candidates(folder, name) for name in FILE_NAMES)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on FOLDER/.lock so concurrent fetches download each file once."""
    if fcntl is None:
        yield
        return
    # "a" creates the file without truncating it; the lock file stays (removing it races).
    with open(folder / ".lock", "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stamp_path(path: Path) -> Path:
    """The JSON stamp remembering a verified file's raw SHA-256."""
    return path.with_name(f".{path.name}.stamp.json")


def read_stamp(path: Path, stat: os.stat_result) -> str | None:
    """The stamped SHA-256 if the stamp matches the file's size, mtime and inode, else None."""
    try:
        doc = json.loads(stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != _stamp_key(stat):
        return None
    sha256 = doc.get("sha256")
    if isinstance(sha256, str) and len(sha256) == 64:
        return sha256
    return None


def write_stamp(path: Path, stat: os.stat_result, sha256: str) -> None:
    """Stamp a verified file; `stat` is from before verification, so a later change voids it."""
    doc = {"key": _stamp_key(stat), "sha256": sha256}
    target = stamp_path(path)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        pass  # a stamp only saves time; a read-only cache simply goes without one
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _stamp_key(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def fsync_dir(folder: Path) -> None:
    """Make a rename in the folder durable (best effort: not every platform can open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
