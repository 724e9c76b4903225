"""Cache folders: where each dataset lives, the names its files go by, the download lock."""

from __future__ import annotations

import contextlib
import os
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
    """Where a dataset lives: data_dir itself when it holds any of the four files, else ROOT/<name>.

    A --data-dir folder with even one of the files is the user's dataset folder, not a cache
    root: bptrain may add the files it lacks there, but never replaces or deletes one.
    """
    info = get_info(dataset)
    if data_dir is not None and str(data_dir):
        given = _absolute(data_dir)
        if any(candidates(given, name) for name in FILE_NAMES):
            return Location(given, owned=False)
    return Location(resolve_data_dir(data_dir) / info.name, owned=True)


def _absolute(path: PathLike) -> Path:
    return Path(path).expanduser().absolute()


def names_of(name: str) -> tuple[str, ...]:
    """The names one of the four files is looked for under, in the order tried.

    NAME (train-images-idx3-ubyte), then the widespread Kaggle copy's NAME with a dot before
    idx (train-images.idx3-ubyte), then both with .gz. Uncompressed comes first because it
    reads faster. A name alone proves nothing: for mnist and fashion-mnist the raw SHA-256
    then decides; for the idx dataset the name is all there is.
    """
    kaggle = name.replace("-idx", ".idx")
    return name, kaggle, f"{name}.gz", f"{kaggle}.gz"


def candidates(folder: Path, name: str) -> list[Path]:
    """The existing copies of one IDX file in a folder, in names_of() order."""
    return [folder / n for n in names_of(name) if (folder / n).is_file()]


def holds_all(folder: Path, names: tuple[str, ...] = FILE_NAMES) -> bool:
    """True when the folder has a copy of every named file, gz or raw."""
    return all(candidates(folder, name) for name in names)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder so concurrent fetches download each file once.

    The lock is on the folder's own descriptor, so no lock file is left behind (a user's folder
    gains only the files it lacked). Where folders cannot be locked (Windows, some network
    filesystems) it is skipped: unique temp names and os.replace still keep every file whole.
    """
    fd = _lock_dir(folder)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _lock_dir(folder: Path) -> int | None:
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd
