"""The study's journal file: Optuna's JournalFileBackend, made to survive a full disk and a cut.

Optuna appends one JSON record per line. A write that fails midway (a full disk) leaves part of
a line at the end, and Optuna then appends the next record to that partial line: every later
read fails. So here:

- `check` reads the whole journal before the sweep writes anything. A damaged line anywhere but
  at the end (not UTF-8, not a JSON record) is exit 4 naming FILE:LINE, and nothing is written.
- The end of the journal is repaired, under Optuna's own lock, before each append (and once by
  `check`): a last line that is not a whole record (cut anywhere, or garbage) is what a failed
  or killed writer leaves, and is dropped with a warning; a whole record that only lacks its
  newline gets one.
- A failed append (ENOSPC, EROFS) cuts the file back to its size before the write, so the
  journal only ever holds whole lines, and is a JournalWriteError (exit 4) naming the journal.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from ... import files
from ...errors import CheckpointError, DestinationError

log = logging.getLogger("bptrain.sweep")
_CHUNK = 1 << 16
_HEAD = b'{"op_code":'  # how every line Optuna (and JournalFile) writes begins
# The keys Optuna's replay reads from each kind of record (optuna.storages.journal._storage's
# JournalOperation codes): a record without them is damage that parses as JSON.
_KEYS: dict[int, tuple[str, ...]] = {
    0: ("study_name", "directions"),
    1: ("study_id",),
    2: ("study_id", "user_attr"),
    3: ("study_id", "system_attr"),
    4: ("study_id", "datetime_start"),
    5: ("trial_id", "param_name", "param_value_internal", "distribution"),
    6: ("trial_id", "state", "values"),
    7: ("trial_id", "step", "intermediate_value"),
    8: ("trial_id", "user_attr"),
    9: ("trial_id", "system_attr"),
    10: (),
}


class JournalWriteError(DestinationError):
    """The journal (or its lock beside it) could not be written: exit 4."""


class JournalDamaged(CheckpointError):
    """A line of the journal that is not a record, before its end: exit 4."""


def write_error(path: str, error: OSError) -> JournalWriteError:
    return JournalWriteError(
        f"cannot write the sweep journal {path}: {error.strerror or error}",
        hint="free some space or make it writable, then run the same command again to "
        "continue the study",
    )


def damaged(path: str, line: int, reason: str) -> JournalDamaged:
    return JournalDamaged(
        f"{path}:{line} is damaged ({reason})",
        hint="restore the journal from a copy, or start a new study with another --out or "
        "--storage; bptrain leaves a damaged journal as it is",
    )


def parse(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """A journal line's record, or None and why it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 text: byte 0x{line[error.start]:02x} at column {error.start + 1}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not a JSON record: {error.msg} at column {error.colno}"
    if not isinstance(record, dict) or record.get("op_code") not in _KEYS:
        return None, "not an Optuna journal record"
    missing = [key for key in ("worker_id", *_KEYS[record["op_code"]]) if key not in record]
    if missing:
        return None, f"a record without {', '.join(missing)}"
    return record, ""


class JournalFile(JournalFileBackend):
    """Optuna's journal backend with the checks and repairs above."""

    def __init__(self, path: str) -> None:
        try:
            super().__init__(path)
        except OSError as error:  # creating the file
            raise write_error(path, error) from None

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Optuna's read_logs, with a damaged line before the end named by its number.

        A last line without its newline is being written by another process (or was cut: the
        next append repairs it), so it is left for the next read, as Optuna does; so is a last
        line that is not a record."""
        start = log_number_from if log_number_from in self._log_number_offset else 0
        with open(self._file_path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            position = self._log_number_offset[start]
            handle.seek(position)
            for number, line in enumerate(handle, start=start):
                end = position + len(line)
                if end > size or not line.endswith(b"\n"):
                    return
                record, reason = parse(line)
                if record is None:
                    if end == size:
                        return
                    raise damaged(self._file_path, number + 1, reason)
                self._log_number_offset[number + 1] = position = end
                if number >= log_number_from:
                    yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(x, separators=(",", ":")) + "\n" for x in logs).encode()
        try:
            with get_lock_file(self._lock):
                fd = os.open(self._file_path, os.O_RDWR | os.O_APPEND)
                try:
                    _append(fd, data, self._file_path)
                finally:
                    os.close(fd)
        except OSError as error:
            raise write_error(self._file_path, error) from None

    def repair(self) -> None:
        """Repair the end of the journal now (under the lock), when it needs it."""
        try:
            with open(self._file_path, "rb") as handle:
                if (
                    _tail_size(handle.fileno(), self._file_path)
                    == os.fstat(handle.fileno()).st_size
                ):
                    return  # whole: nothing is written
            with get_lock_file(self._lock):
                fd = os.open(self._file_path, os.O_RDWR | os.O_APPEND)
                try:
                    _repair_tail(fd, self._file_path)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as error:
            raise write_error(self._file_path, error) from None


def _append(fd: int, data: bytes, path: str) -> None:
    """`data` at the end of the repaired journal; on failure, the journal as it was."""
    size = _repair_tail(fd, path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, size)  # truncating frees space: it works on a full disk
            os.fsync(fd)
        except OSError as again:
            log.warning(f"{path}: could not remove a partly written line: {again}")
        raise


def _repair_tail(fd: int, path: str) -> int:
    """Drop a last line that is not a whole record, or finish one that lacks its newline;
    returns the journal's size afterwards. The caller holds the journal's lock."""
    size = os.fstat(fd).st_size
    keep = _tail_size(fd, path)
    if keep > size:  # a whole record cut just before its newline
        os.write(fd, b"\n")
        log.warning(f"{path}: its last line lacked a newline; added it")
    elif keep < size:
        os.ftruncate(fd, keep)
        log.warning(
            f"{path}: its last line was cut ({size - keep} bytes, not a whole record: a write "
            "that failed or was killed); dropped it"
        )
    return keep


def _tail_size(fd: int, path: str) -> int:
    """How much of the journal is whole lines, plus a last record that only lacks a newline:
    the size itself when nothing needs repair. A file whose only line is neither a record nor
    the start of one is no journal (a wrong --storage): that is damage, never cut away."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    ends_whole = os.pread(fd, 1, size - 1) == b"\n"
    start = _line_start(fd, size - 1 if ends_whole else size)
    tail = os.pread(fd, size - start, start)
    record, reason = parse(tail)
    if record is not None:
        return size if ends_whole else size + 1
    if start > 0 or tail.startswith(_HEAD) or _HEAD.startswith(tail.rstrip(b"\n")):
        return start
    raise damaged(path, 1, reason)


def _line_start(fd: int, end: int) -> int:
    """Where the line that ends at `end` (exclusive) starts: just after the newline before it."""
    position = end
    while position > 0:
        step = min(_CHUNK, position)
        chunk = os.pread(fd, step, position - step)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return position - step + found + 1
        position -= step
    return 0


def check(path: str) -> int | None:
    """Before the sweep writes anything: the journal's records (None when it is missing).
    Damage before the last line is exit 4; a cut last line is repaired (see the module)."""
    kind = files.kind_of(Path(os.path.realpath(path)))
    if kind is None:
        files.check_folder(Path(path).parent, label="the sweep journal", target=Path(path))
        return None
    if kind != "a regular file":
        raise JournalWriteError(
            f"--storage {path} is {kind}, not a regular file",
            hint="give a journal file path, or a database URL",
        )
    count = 0
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            position = 0
            for number, line in enumerate(handle, start=1):
                position += len(line)
                record, reason = parse(line)
                if record is None and position < size:
                    raise damaged(path, number, reason)
                count += record is not None
    except OSError as error:
        raise JournalDamaged(f"cannot read the sweep journal {path}: {error.strerror}") from None
    files.check_folder(Path(path).parent, label="the sweep journal", target=Path(path))
    JournalFile(path).repair()
    return count
