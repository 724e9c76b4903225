"""fetch(): find each file in the cache, a user's or the system's folder, else download it."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..errors import DataError
from .cache import (
    PathLike,
    candidates,
    dataset_folder,
    folder_lock,
    holds_all,
    read_stamp,
    stamp_path,
    write_stamp,
)
from .datasets import FILE_NAMES, DatasetInfo, get_info
from .download import Transfer, download_file, make_session, mirror_list
from .env import ENV_OFFLINE, env_mirrors, resolve_offline
from .idx import CorruptFileError, Expect, IdxFile, read_idx

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
        """A JSON-ready dict for one JSON Lines record."""
        files = [{"name": f.name, "sha256": f.sha256, "source": f.source} for f in self.files]
        return {"dataset": self.dataset, "folder": str(self.folder), "files": files}


@dataclass(frozen=True)
class _Found:
    record: FileRecord
    idx: IdxFile | None  # None when a stamp vouched for the file and no arrays were wanted


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
) -> FetchResult:
    """Make sure the four verified files are on disk (downloading what is missing or corrupt)."""
    transfer = Transfer(timeout=timeout, retries=retries, backoff=backoff, quiet=quiet)
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
) -> tuple[FetchResult, dict[str, IdxFile]]:
    """fetch() that can also hand back the parsed files, so load() reads each file once."""
    info = get_info(dataset)
    offline = resolve_offline(offline)
    urls = mirror_list(mirrors, env_mirrors(), info.mirrors)
    location = dataset_folder(info, data_dir)
    if not location.owned:
        return _in_place(info, location.folder, want_arrays)
    found, problems = _scan(info, location.folder, FILE_NAMES, want_arrays, stamps=True)
    if problems:
        system = _system_copy(info, want_arrays)
        if system is not None:
            return system
        if offline or not urls:
            raise _missing_error(info, location.folder, problems, offline)
        found.update(_download(info, location.folder, problems, urls, transfer, want_arrays))
    return _result(info, location.folder, found)


def _result(
    info: DatasetInfo, folder: Path, found: dict[str, _Found]
) -> tuple[FetchResult, dict[str, IdxFile]]:
    records = [found[name].record for name in FILE_NAMES]
    arrays = {name: found[name].idx for name in FILE_NAMES if found[name].idx is not None}
    return FetchResult(info.name, folder, records), arrays  # type: ignore[return-value]


def _expect(info: DatasetInfo, name: str) -> Expect:
    spec = info.spec(name)
    return Expect(spec, info.image_shape, info.num_classes, info.max_file_bytes)


def _check(info: DatasetInfo, path: Path, name: str, want_arrays: bool, stamps: bool) -> _Found:
    """Verify one file (CorruptFileError if bad); stamps let an unchanged file skip the hash."""
    stat = path.stat()
    trusted = read_stamp(path, stat) if stamps else None
    if trusted and info.spec(name).sha256 not in (None, trusted):
        trusted = None  # a stamp from another dataset's file: hash it again
    if trusted and not want_arrays:
        return _Found(FileRecord(name, path, trusted, "cache"), None)
    idx = read_idx(path, _expect(info, name), trusted_sha256=trusted)
    if stamps and not trusted:
        write_stamp(path, stat, idx.sha256)
    return _Found(FileRecord(name, path, idx.sha256, "cache"), idx if want_arrays else None)


def _scan(
    info: DatasetInfo, folder: Path, names: tuple[str, ...], want_arrays: bool, stamps: bool
) -> tuple[dict[str, _Found], dict[str, str]]:
    """Check the named files in a folder: (found, problems as name -> what is wrong)."""
    found: dict[str, _Found] = {}
    problems: dict[str, str] = {}
    for name in names:
        reasons = []
        for path in candidates(folder, name):
            try:
                found[name] = _check(info, path, name, want_arrays, stamps)
                break
            except CorruptFileError as exc:
                log.warning("%s", exc)
                reasons.append(f"{path.name} is corrupt: {exc.reason}")
        else:
            problems[name] = "; ".join(reasons) or "missing"
    return found, problems


def _in_place(
    info: DatasetInfo, folder: Path, want_arrays: bool
) -> tuple[FetchResult, dict[str, IdxFile]]:
    """A folder bptrain does not own: verify every file, never write there (no stamps)."""
    found, problems = _scan(info, folder, FILE_NAMES, want_arrays, stamps=False)
    if problems:
        raise DataError(
            f"{info.name}: bad files in {folder}: " + "; ".join(problems.values()),
            hint=f"replace them with good copies, or use another --data-dir than {folder}",
        )
    return _result(info, folder, found)


def _system_copy(
    info: DatasetInfo, want_arrays: bool
) -> tuple[FetchResult, dict[str, IdxFile]] | None:
    """A verified copy in a system folder (e.g. Debian's /usr/share/datasets), or None."""
    for folder in info.system_dirs:
        if not holds_all(folder):
            continue
        try:
            result = _in_place(info, folder, want_arrays)
        except DataError as exc:
            log.warning("ignoring the system copy: %s", exc)
            continue
        log.info("using the system copy in %s", folder)
        return result
    return None


def _missing_error(
    info: DatasetInfo, folder: Path, problems: dict[str, str], offline: bool
) -> DataError:
    """Name each missing file, its checksum and the folder to put it in."""
    items = []
    for name, problem in problems.items():
        sha256 = info.spec(name).sha256
        want = f"raw SHA-256 {sha256}" if sha256 else "any valid IDX data"
        items.append(f"{name}.gz or {name} ({problem}; {want})")
    why = f"offline mode ({ENV_OFFLINE} or --offline)" if offline else "no mirror is known"
    hint = f"put the files in {folder}"
    hint += ", or run without --offline" if offline else ", or pass --mirror URL or --data-dir"
    return DataError(f"{info.name}: cannot fetch with {why}: need " + ", ".join(items), hint=hint)


def _download(
    info: DatasetInfo,
    folder: Path,
    problems: dict[str, str],
    urls: tuple[str, ...],
    transfer: Transfer,
    want_arrays: bool,
) -> dict[str, _Found]:
    """Download the problem files into an owned folder, under a lock shared with other fetches."""
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(folder))
        except OSError as exc:
            raise DataError(
                f"cannot write to {folder}: {exc.strerror or exc}",
                hint="choose a writable folder with --data-dir or BPTRAIN_DATA_DIR",
            ) from None
        # Another process may have fetched the files while this one waited for the lock.
        found, still = _scan(info, folder, tuple(problems), want_arrays, stamps=True)
        session = stack.enter_context(make_session())
        for name in still:
            found[name] = _download_verified(info, folder, name, urls, session, transfer)
            if not want_arrays:
                found[name] = _Found(found[name].record, None)
        return found


def _download_verified(
    info: DatasetInfo,
    folder: Path,
    name: str,
    urls: tuple[str, ...],
    session: requests.Session,
    transfer: Transfer,
) -> _Found:
    """Download one file from the first mirror whose copy verifies, stamp it, drop stale copies."""
    expect = _expect(info, name)

    def verify(tmp: Path) -> tuple[IdxFile, os.stat_result]:
        return read_idx(tmp, expect, gzipped=True), tmp.stat()

    size = expect.spec.size
    # gzip never grows data by more than a fraction of a percent (stored deflate blocks).
    max_bytes = size + size // 64 + 4096 if size else info.max_file_bytes
    (idx, stat), url = download_file(
        name, urls, folder, verify, session=session, transfer=transfer, max_bytes=max_bytes
    )
    final = folder / f"{name}.gz"
    write_stamp(final, stat, idx.sha256)
    # Only a corrupt uncompressed copy can be left here, and it would shadow the new .gz.
    for stale in (folder / name, stamp_path(folder / name)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return _Found(FileRecord(name, final, idx.sha256, url), idx)
