"""fetch(): find each file in the cache, a user's or the system's folder, else download it."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..errors import DataError
from . import messages
from .cache import Location, PathLike, candidates, dataset_folder, folder_lock, holds_all
from .datasets import (
    FILE_NAMES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetInfo,
    get_info,
)
from .download import MirrorsFailed, Transfer, download_file, make_session, mirror_list
from .env import env_mirrors, resolve_offline
from .idx import CorruptFileError, Expect, IdxFile, read_idx
from .messages import Bad

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileRecord:
    """One verified file: IDX name, path, raw SHA-256, and the URL it came from or 'cache'."""

    name: str
    path: Path
    sha256: str
    source: str


@dataclass(frozen=True)
class FetchResult:
    """The verified files of one dataset and the folder they are in."""

    dataset: str
    folder: Path
    files: list[FileRecord] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict for one JSON Lines record ("event" first, as in every record)."""
        files = [{"name": f.name, "sha256": f.sha256, "source": f.source} for f in self.files]
        return {
            "event": "download",
            "dataset": self.dataset,
            "folder": str(self.folder),
            "files": files,
        }


@dataclass(frozen=True)
class Found:
    """One verified file: its record, its IDX dims, and the parsed file when arrays are wanted."""

    record: FileRecord
    dims: tuple[int, ...]
    idx: IdxFile | None


def fetch(
    dataset: str | DatasetInfo,
    data_dir: PathLike | None = None,
    *,
    mirrors: tuple[str, ...] | list[str] = (),
    offline: bool | None = None,
    quiet: bool = False,
    timeout: tuple[float, float] = (10, 60),
    retries: int = 2,
    backoff: float = 0.5,
    min_rate: float = Transfer.min_rate,
    stall_window: float = Transfer.stall_window,
) -> FetchResult:
    """Make sure the four verified files are on disk (downloading what is missing or corrupt).

    Every file is read and hashed on every call: the reported SHA-256 is always computed.
    """
    transfer = Transfer(
        timeout=timeout, retries=retries, backoff=backoff, quiet=quiet,
        min_rate=min_rate, stall_window=stall_window,
    )  # fmt: skip
    result, _ = resolve(dataset, data_dir, mirrors=mirrors, offline=offline, transfer=transfer)
    return result


def resolve(
    dataset: str | DatasetInfo,
    data_dir: PathLike | None,
    *,
    mirrors: tuple[str, ...] | list[str] = (),
    offline: bool | None = None,
    transfer: Transfer = Transfer(),  # noqa: B008 (frozen dataclass: safe as a default)
    want_arrays: bool = False,
    names: tuple[str, ...] = FILE_NAMES,
) -> tuple[FetchResult, dict[str, IdxFile]]:
    """fetch() that can also hand back the parsed files, so load() reads each file once.

    `names` limits the work to some of the four files: only they are verified or downloaded.
    """
    info = get_info(dataset)
    offline = resolve_offline(offline)
    urls = mirror_list(mirrors, env_mirrors(), info.mirrors)
    location = dataset_folder(info, data_dir)
    found, bad = _scan(info, location.folder, names, want_arrays)
    system = _system_copy(info, names, want_arrays) if bad and location.owned else None
    if system is not None:
        location, found = system
    elif bad:
        found |= _repair(info, location, found, bad, urls, offline, transfer, want_arrays)
    check_splits(info, found)
    records = [found[name].record for name in names]
    arrays = {name: found[name].idx for name in names if found[name].idx is not None}
    return FetchResult(info.name, location.folder, records), arrays  # type: ignore[return-value]


def _expect(info: DatasetInfo, name: str) -> Expect:
    spec = info.spec(name)
    return Expect(spec, info.image_shape, info.num_classes, info.max_file_bytes)


def _scan(
    info: DatasetInfo, folder: Path, names: tuple[str, ...], want_arrays: bool
) -> tuple[dict[str, Found], dict[str, Bad]]:
    """Verify the named files in a folder (the first good copy of each); logs nothing."""
    found: dict[str, Found] = {}
    bad: dict[str, Bad] = {}
    for name in names:
        errors = []
        for path in candidates(folder, name):
            try:
                idx = read_idx(path, _expect(info, name))
            except CorruptFileError as exc:
                errors.append(exc)
                continue
            record = FileRecord(name, path, idx.sha256, "cache")
            found[name] = Found(record, idx.dims, idx if want_arrays else None)
            break
        else:
            bad[name] = Bad(tuple(errors))
    return found, bad


def _system_copy(
    info: DatasetInfo, names: tuple[str, ...], want_arrays: bool
) -> tuple[Location, dict[str, Found]] | None:
    """A verified copy in a system folder (e.g. Debian's /usr/share/datasets), or None."""
    for folder in info.system_dirs:
        if not holds_all(folder, names):
            continue
        found, bad = _scan(info, folder, names, want_arrays)
        if bad:
            problems = "; ".join(problem.describe() for problem in bad.values())
            log.warning("ignoring the system copy in %s: %s", folder, problems)
            continue
        log.info("using the system copy in %s", folder)
        return Location(folder, owned=False), found
    return None


def _repair(
    info: DatasetInfo,
    location: Location,
    found: dict[str, Found],
    bad: dict[str, Bad],
    urls: tuple[str, ...],
    offline: bool,
    transfer: Transfer,
    want_arrays: bool,
) -> dict[str, Found]:
    """Download what is missing (in bptrain's own cache also what is corrupt), or say why not."""
    other = messages.other_dataset(info, bad, found_any=bool(found))
    if other and (not location.owned or offline or not urls):
        raise messages.other_dataset_error(info, location.folder, other)
    if not location.owned and not all(problem.missing for problem in bad.values()):
        raise messages.bad_files_error(info, location.folder, bad)  # a user's file: not ours
    if offline or not urls:
        raise messages.missing_error(info, location, bad, offline=offline, mirrors=bool(urls))
    return _download(info, location, tuple(bad), urls, transfer, want_arrays)


def _download(
    info: DatasetInfo,
    location: Location,
    names: tuple[str, ...],
    urls: tuple[str, ...],
    transfer: Transfer,
    want_arrays: bool,
) -> dict[str, Found]:
    """Download the named files, under a lock shared with other fetches into this folder."""
    _make_folder(location.folder)
    with folder_lock(location.folder), make_session() as session:
        # Another process may have fetched the files while this one waited for the lock.
        found, still = _scan(info, location.folder, names, want_arrays)
        for problem in still.values():
            if not problem.missing:  # said here once, not in each scan
                log.warning("%s: %s; downloading it again", location.folder, problem.describe())
        for number, name in enumerate(still):
            try:
                found[name] = _download_verified(info, location, name, urls, session, transfer)
            except MirrorsFailed as exc:
                remaining = list(still)[number:]
                raise messages.download_error(info, location, exc, remaining) from None
            if not want_arrays:
                found[name] = Found(found[name].record, found[name].dims, None)
        return found


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot write to {folder}: {exc.strerror or exc}",
            hint="choose a writable folder with --data-dir or BPTRAIN_DATA_DIR",
        ) from None


def _download_verified(
    info: DatasetInfo,
    location: Location,
    name: str,
    urls: tuple[str, ...],
    session: requests.Session,
    transfer: Transfer,
) -> Found:
    """Download one file from the first mirror whose copy verifies; MirrorsFailed if none does."""
    expect = _expect(info, name)
    size = expect.spec.size
    # gzip never grows data by more than a fraction of a percent (stored deflate blocks).
    max_bytes = size + size // 64 + 4096 if size else info.max_file_bytes
    idx, url = download_file(
        name,
        urls,
        location.folder,
        lambda tmp: read_idx(tmp, expect, gzipped=True),
        session=session,
        transfer=transfer,
        max_bytes=max_bytes,
    )
    final = location.folder / f"{name}.gz"
    if location.owned:  # bptrain's own cache: corrupt copies tried before the new one go
        for stale in candidates(location.folder, name):
            if stale != final:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
    return Found(FileRecord(name, final, idx.sha256, url), idx.dims, idx)


def check_splits(info: DatasetInfo, found: dict[str, Found]) -> None:
    """Each split has as many labels as images; train and test images share one size.

    Only the files at hand are compared (load(splits=...) may verify just one split).
    """
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if images not in found or labels not in found:
            continue
        n_images, n_labels = found[images].dims[0], found[labels].dims[0]
        if n_images != n_labels:
            raise DataError(
                f"{info.name}: {found[images].record.path} holds {n_images} images "
                f"but {found[labels].record.path} holds {n_labels} labels",
                hint="the two files must come from the same dataset",
            )
    if TRAIN_IMAGES in found and TEST_IMAGES in found:
        train, test = found[TRAIN_IMAGES].dims[1:], found[TEST_IMAGES].dims[1:]
        if train != test:
            raise DataError(
                f"{info.name}: training images are {train[0]}x{train[1]} but test images are "
                f"{test[0]}x{test[1]} in {found[TEST_IMAGES].record.path}",
                hint="both must come from the same dataset",
            )
