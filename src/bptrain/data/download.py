"""The downloader: mirrors in order, retries on 5xx/429, streamed into a verified temp file."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from .. import __version__, console, files
from ..errors import ConfigError, DataError
from .idx import CorruptFileError

log = logging.getLogger(__name__)

USER_AGENT = f"bptrain/{__version__}"
MAX_RETRY_AFTER = 10.0  # seconds; a server asking for more is treated like any failing mirror
_CHUNK = 1 << 16

T = TypeVar("T")


class MirrorFailure(Exception):
    """One mirror failed for one file; `reason` is a short phrase for the final report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MirrorsFailed(DataError):
    """Every mirror failed for one file; `failures` holds (mirror, reason) in the order tried."""

    def __init__(self, name: str, failures: list[tuple[str, str]]) -> None:
        super().__init__(f"could not download {name}.gz: {summarize(failures)}")
        self.name = name
        self.failures = failures


def summarize(failures: list[tuple[str, str]]) -> str:
    """'mirror1, mirror2: reason; mirror3: other reason': mirrors that failed alike share one.

    Each mirror appears as given (its base URL); the file name is said once, by the caller.
    """
    by_reason: dict[str, list[str]] = {}
    for mirror, reason in failures:
        by_reason.setdefault(reason, []).append(mirror)
    parts = [f"{', '.join(mirrors)}: {reason}" for reason, mirrors in by_reason.items()]
    return "; ".join(parts) or "no mirror is known"


@dataclass(frozen=True)
class Transfer:
    """How to talk to mirrors: (connect, read) timeouts, retries and backoff base, progress.

    A body arriving at under `min_rate` bytes/s, averaged over each `stall_window` seconds, is
    abandoned for the next mirror: the read timeout alone never fires while a trickle of bytes
    keeps every recv busy (1 KiB every 2 s would take 14 hours for Fashion-MNIST).
    """

    timeout: tuple[float, float] = (10, 60)
    retries: int = 2
    backoff: float = 0.5
    quiet: bool = False
    min_rate: float = 4096.0
    stall_window: float = 30.0


def make_session() -> requests.Session:
    """A session with bptrain's headers; trust_env keeps proxies and certificates from the env."""
    session = requests.Session()
    # identity: the .gz bytes must arrive as stored, not re-encoded for transport.
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def mirror_list(*groups: Iterable[str]) -> tuple[str, ...]:
    """Mirrors in order, each ending in '/', duplicates dropped; ConfigError if not http(s)."""
    seen: dict[str, None] = {}
    for mirror in (m.strip() for group in groups for m in group):
        parts = urlsplit(mirror)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"mirror {mirror!r} is not an http(s) URL",
                hint="for files on disk use --data-dir FOLDER instead",
            )
        seen.setdefault(mirror if mirror.endswith("/") else mirror + "/", None)
    return tuple(seen)


def download_file(
    name: str,
    mirrors: tuple[str, ...],
    folder: Path,
    verify: Callable[[Path], T],
    *,
    session: requests.Session,
    transfer: Transfer,
    max_bytes: int,
) -> tuple[T, str]:
    """Fetch FOLDER/NAME.gz from the first mirror whose copy verifies; returns (verified, url).

    Each failing mirror is logged as a warning as it happens; MirrorsFailed if all fail.
    """
    failures: list[tuple[str, str]] = []
    for number, mirror in enumerate(mirrors, 1):
        url = mirror + f"{name}.gz"
        final = folder / f"{name}.gz"
        try:
            return _download_one(url, final, verify, session, transfer, max_bytes), url
        except MirrorFailure as exc:
            more = "; trying the next mirror" if number < len(mirrors) else ""
            log.warning("%s: %s%s", url, exc.reason, more)
            failures.append((mirror, exc.reason))
    raise MirrorsFailed(name, failures)


def _download_one(
    url: str,
    final: Path,
    verify: Callable[[Path], T],
    session: requests.Session,
    transfer: Transfer,
    max_bytes: int,
) -> T:
    # files' unique hidden name in the target folder, ending in .part (a partial download):
    # concurrent fetches never share a temp file and os.replace stays on one filesystem, so
    # the final name only ever holds whole files. Not files.atomic_write: its errors are exit
    # 4 (a destination), where a data folder's are exit 3, and a mirror's bad copy is retried.
    tmp = files.temp_name(final).with_suffix(".part")
    try:
        fd = _create(tmp)
        try:
            with open(fd, "wb") as out:
                _get(session, url, _LocalFile(out), final.name, transfer, max_bytes)
                out.flush()
                os.fsync(out.fileno())
            verified = _verified(verify, tmp)
            os.replace(tmp, final)
        except _WriteFailed as failed:  # the folder, not the mirror: no other mirror helps
            raise _cannot_write(tmp.parent, failed.error) from None
        except OSError as error:
            raise _cannot_write(tmp.parent, error) from None
        files.fsync_dir(final.parent)
        return verified
    finally:
        # Also on KeyboardInterrupt: the temp file goes, the interrupt goes on.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _verified(verify: Callable[[Path], T], tmp: Path) -> T:
    try:
        return verify(tmp)
    except CorruptFileError as exc:  # this mirror's copy is bad: the next one may be good
        raise MirrorFailure(exc.reason) from None


class _WriteFailed(Exception):
    """Writing the downloaded bytes failed (a full disk): not an OSError, so no mirror's fault."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _LocalFile:
    """The temp file, whose write errors are told apart from the network's OSErrors."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            raise _WriteFailed(error) from None


def _create(tmp: Path) -> int:
    try:
        # 0o644 through the umask, as for any file the user creates (mkstemp would force 0o600).
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise _cannot_write(tmp.parent, exc) from None


def _cannot_write(folder: Path, error: OSError) -> DataError:
    return DataError(
        f"cannot write to {folder}: {error.strerror or error}",
        hint="free some space, or choose a writable folder with --data-dir or BPTRAIN_DATA_DIR",
    )


def _get(
    session: requests.Session,
    url: str,
    out: _LocalFile,
    label: str,
    transfer: Transfer,
    max_bytes: int,
) -> None:
    retry: _Retry | None = None
    for attempt in range(transfer.retries + 1):
        if retry is not None:
            time.sleep(max(transfer.backoff * 2 ** (attempt - 1), retry.after))
        log.info("downloading %s", url)
        try:
            retry = _attempt(session, url, out, label, transfer, max_bytes)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise MirrorFailure(describe_error(exc)) from None
        if retry is None:
            return
    assert retry is not None
    raise MirrorFailure(f"{retry.status} after {transfer.retries + 1} tries")


@dataclass(frozen=True)
class _Retry:
    status: str  # e.g. "HTTP 503 Service Unavailable"
    after: float  # the server's Retry-After in seconds, 0 when absent


def _attempt(
    session: requests.Session,
    url: str,
    out: _LocalFile,
    label: str,
    transfer: Transfer,
    max_bytes: int,
) -> _Retry | None:
    with session.get(url, stream=True, timeout=transfer.timeout) as resp:
        status = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
        if resp.status_code == 429 or resp.status_code >= 500:
            return _Retry(status, _retry_after(resp, status))
        if resp.status_code != 200:
            raise MirrorFailure(status)
        _stream_body(resp, out, label, transfer, max_bytes)
        return None


def _retry_after(resp: requests.Response, status: str) -> float:
    try:
        after = max(float(resp.headers.get("Retry-After", "0")), 0.0)
    except ValueError:
        return 0.0  # an HTTP date: rare for these hosts, so fall back to our own backoff
    if after > MAX_RETRY_AFTER:
        raise MirrorFailure(f"{status}, asked to retry after {after:g} s")
    return after


def _stream_body(
    resp: requests.Response, out: _LocalFile, label: str, transfer: Transfer, max_bytes: int
) -> None:
    length = _content_length(resp)
    if length is not None and length > max_bytes:
        raise MirrorFailure(f"body of {length} bytes is over the {max_bytes}-byte limit")
    received = 0
    read, pace = _reader(resp), _Pace(transfer.min_rate, transfer.stall_window)
    with console.byte_progress(label, length, quiet=transfer.quiet) as bar:
        while chunk := read():
            received += len(chunk)
            if received > max_bytes:
                raise MirrorFailure(f"body is over the {max_bytes}-byte limit")
            out.write(chunk)
            bar.update(len(chunk))
            pace.add(len(chunk))
    # urllib3 2 raises IncompleteRead itself; urllib3 1.26 (still allowed by requests) does not.
    if length is not None and received != length:
        raise MirrorFailure(f"short body: {received} of {length} bytes")


def _reader(resp: requests.Response) -> Callable[[], bytes]:
    """Read up to 64 KiB of raw bytes as sent (a server's Content-Encoding: gzip not undone).

    read1 returns whatever has arrived, so the pace is checked while a trickle comes in; read
    (urllib3 1.26 has no read1 with decode_content) waits for the full 64 KiB.
    """
    raw = resp.raw
    if callable(getattr(raw, "read1", None)):
        return lambda: raw.read1(_CHUNK, decode_content=False)
    return lambda: raw.read(_CHUNK, decode_content=False)


class _Pace:
    """Fails a body that arrives at under `min_rate` bytes/s over a `window`-second stretch."""

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate, self.window = min_rate, window
        self.start, self.count = time.monotonic(), 0

    def add(self, count: int) -> None:
        self.count += count
        elapsed = time.monotonic() - self.start
        if elapsed < self.window:
            return
        if self.count < self.min_rate * elapsed:
            raise MirrorFailure(f"stalled: {self.count} bytes in {elapsed:.1f} s")
        self.start, self.count = time.monotonic(), 0


def _content_length(resp: requests.Response) -> int | None:
    try:
        return int(resp.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def describe_error(exc: BaseException) -> str:
    """A short phrase for a network error (requests' own messages run to several lines)."""
    if isinstance(exc, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)):
        return "connection timed out"
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return "read timed out"
    text = str(exc)
    if match := re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", text):
        return f"short body: connection closed after {match[1]} bytes, {match[2]} more expected"
    if match := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text):
        return f"connection failed: {match[1].strip()}"
    return f"{type(exc).__name__}: {text}"[:200]
