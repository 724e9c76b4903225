r"""Output: records on stdout, logs and progress on stderr, and errors turned into exit codes.

The only module that writes to stdout or stderr. stdout carries JSON Lines results and nothing
else; logs go through one logging channel (the "bptrain" logger) whose verbosity -q/-v set.

Names from outside (file names above all) may hold any character but "/" and NUL. Two rules
keep them harmless, applied here and nowhere else:
- stderr: every line bptrain writes has its control characters (C0 but newline and tab, DEL,
  C1, and the bidirectional controls that reorder what a terminal shows) written as \xNN or
  \uNNNN, so a file named `x<ESC>]0;pwned<BEL>.png` shows as `x\x1b]0;pwned\x07.png` and can
  neither retitle nor clear a terminal. `shown_name` escapes newlines too, for a name put
  inside one line, so one input keeps one `Error:` line.
- stderr and JSON records: a byte that is not UTF-8 (Python holds it as a lone surrogate,
  U+DC80..U+DCFF, by surrogateescape) is written as the four characters \xNN. A Latin-1
  `café.png` is "caf\\xe9.png" in a record: valid UTF-8 and valid JSON that strict parsers
  accept (a lone surrogate is neither), readable, and the same text on stderr.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import BptrainError, ExitCode, Interrupted, OutputError, StdoutClosed
from .functional import finite_or_null

LOGGER = logging.getLogger("bptrain")
log = LOGGER  # the run's modules log through child loggers: logging.getLogger("bptrain.x")


@dataclass
class Options:
    """The switches every command sees (before or after the subcommand's name)."""

    quiet: bool = False
    verbose: bool = False
    traceback: bool = False


OPTIONS = Options()


def configure(*, quiet: bool = False, verbose: bool = False, traceback: bool = False) -> None:
    """Turn switches on (never off: `bptrain -q train` and `bptrain train -q` both count)."""
    OPTIONS.quiet |= quiet
    OPTIONS.verbose |= verbose
    OPTIONS.traceback |= traceback
    _setup_logging()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """One command: default switches and bptrain's log handler, the logger as it was after.

    Tests run many commands in one process; none may leave its handler behind.
    """
    saved = (list(LOGGER.handlers), LOGGER.propagate, LOGGER.level)
    OPTIONS.quiet = OPTIONS.verbose = OPTIONS.traceback = False
    _STDERR.alive = True
    _setup_logging()
    try:
        yield
    finally:
        LOGGER.handlers[:], LOGGER.propagate = saved[0], saved[1]
        LOGGER.setLevel(saved[2])


# ---------------------------------------------------------------------------------------------
# Names from outside, made safe to show (the module's docstring has the rules)


def _escapes(codes: list[int]) -> dict[int, str]:
    return {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in codes}


_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), 0x2066, 0x2067]
_CONTROLS += [0x2068, 0x2069, 0x200E, 0x200F, 0x061C]
_NOT_UTF8 = {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}  # surrogateescape
_SURROGATES = _escapes([c for c in range(0xD800, 0xE000) if not 0xDC80 <= c < 0xDD00])
_SURROGATES |= _NOT_UTF8
_IN_LINES = _escapes([c for c in _CONTROLS if c not in (0x0A, 0x09)]) | _SURROGATES
_IN_NAMES = _escapes(_CONTROLS) | _SURROGATES
_SURROGATE = re.compile("[\ud800-\udfff]")


def shown_name(name: object) -> str:
    """A name (a path) as it may be shown inside a line: every control character escaped."""
    return str(name).translate(_IN_NAMES)


def _shown_lines(text: str) -> str:
    return text.translate(_IN_LINES)


def _valid_unicode(value: Any) -> Any:
    """Plain data with every lone surrogate of its strings written out (see the docstring)."""
    if isinstance(value, str):
        return value.translate(_SURROGATES) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {_valid_unicode(k): _valid_unicode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_valid_unicode(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# stderr: one channel, and a closed stderr is not an error (it only carries logs)


class _Stderr:
    """Writes to stderr; after the first failure (closed or full) it stays silent."""

    alive = True

    def write(self, text: str) -> None:
        if not self.alive:
            return
        try:
            sys.stderr.write(_shown_lines(text))
            sys.stderr.flush()
        except (OSError, ValueError):
            self.alive = False
            _point_at_devnull(2)


_STDERR = _Stderr()


class _Handler(logging.Handler):
    """Plain lines for INFO and DEBUG, `WARNING: ...` above; never raises."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname}: {message}"
        _STDERR.write(message + "\n")


def _setup_logging() -> None:
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
    LOGGER.addHandler(_Handler())
    LOGGER.propagate = False
    level = logging.DEBUG if OPTIONS.verbose else logging.INFO
    LOGGER.setLevel(logging.CRITICAL + 1 if OPTIONS.quiet else level)


def error_line(error: BaseException | str) -> None:
    """`Error: ...` on stderr, one line per line of the message; shown even with -q."""
    _STDERR.write("Error: " + str(error).replace("\n", "\nError: ") + "\n")


def stderr_text(text: str) -> None:
    """Text for a person on stderr (help shown for a bare `bptrain`)."""
    _STDERR.write(text if text.endswith("\n") else text + "\n")


# ---------------------------------------------------------------------------------------------
# stdout: results only


def emit(record: dict[str, Any]) -> None:
    """Write one JSON Lines record to stdout (never NaN/Infinity, never a lone surrogate, which
    strict parsers refuse) and flush it."""
    line = json.dumps(finite_or_null(record), allow_nan=False)
    if "\\ud" in line:  # ASCII-only JSON: a surrogate can only be there as an escape
        line = json.dumps(_valid_unicode(finite_or_null(record)), allow_nan=False)
    write_stdout(line + "\n")


def write_stdout(text: str | bytes) -> None:
    """Results on stdout (text, or an artifact's bytes); a closed pipe raises StdoutClosed,
    a full disk OutputError."""
    try:
        if isinstance(text, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(text)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        _point_at_devnull(1)
        raise StdoutClosed from None
    except OSError as error:
        _point_at_devnull(1)
        raise OutputError(
            f"cannot write results to stdout: {error.strerror or error}",
            hint="check free space where stdout goes" if error.errno == errno.ENOSPC else None,
        ) from None


def _point_at_devnull(fd: int) -> None:
    # So that Python's final flush at exit cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------------------------
# Progress: a tqdm bar on a terminal, a line every N seconds elsewhere (CI logs), none with -q


class _Bar:
    """A tqdm bar per epoch on stderr: batches, loss and samples per second."""

    def __init__(self, epochs: int) -> None:
        from tqdm import tqdm

        self.tqdm, self.epochs, self.bar, self.epoch = tqdm, epochs, None, -1

    def __call__(self, state: Any, steps: int, loss: float) -> None:
        if self.epoch != state.epoch:
            self.close()
            self.epoch, self.started, self.seen0 = state.epoch, time.perf_counter(), state.seen
            self.bar = self.tqdm(
                total=steps, initial=state.step - 1, unit="batch", leave=False,
                desc=f"epoch {state.epoch + 1}/{self.epochs}", file=sys.stderr, dynamic_ncols=True,
            )  # fmt: skip
        self.bar.update(1)
        if state.step % 20 == 0:
            rate = (state.seen - self.seen0) / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} samples/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Lines:
    """A progress line every `every` seconds, for stderr that is not a terminal."""

    def __init__(self, epochs: int, every: float) -> None:
        self.epochs, self.every = epochs, every
        self.last = time.monotonic()
        self.started, self.seen0, self.epoch = self.last, 0, -1

    def __call__(self, state: Any, steps: int, loss: float) -> None:
        now = time.monotonic()
        if self.epoch != state.epoch:
            self.epoch, self.started, self.seen0 = state.epoch, now, state.seen
        if now - self.last < self.every:
            return
        self.last = now
        rate = (state.seen - self.seen0) / max(now - self.started, 1e-9)
        LOGGER.info(
            f"epoch {state.epoch + 1}/{self.epochs}: batch {state.step}/{steps}, "
            f"loss {loss:.4f}, {rate:,.0f} samples/s"
        )

    def close(self) -> None:
        pass


def byte_progress(label: str, total: int | None, *, quiet: bool = False) -> Any:
    """A bar of bytes for a download, on a terminal only (a context manager with update(n))."""
    from tqdm import tqdm

    # disable=None: tqdm stays silent when stderr is not a terminal.
    return tqdm(
        total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        disable=True if quiet or OPTIONS.quiet or not _STDERR.alive else None, leave=False,
    )  # fmt: skip


def progress(epochs: int, every: float = 30.0) -> Any:
    """The progress callback for a training run, or None (-q, or `every` 0 off a terminal)."""
    if OPTIONS.quiet or not _STDERR.alive:
        return None
    if sys.stderr.isatty():
        return _Bar(epochs)
    return _Lines(epochs, every) if every > 0 else None


def trial_progress(total: int, initial: int = 0) -> Any:
    """A tqdm bar of a sweep's trials (update, set_postfix_str, clear, refresh, close) on a
    terminal, or None (-q, or stderr not a terminal: the sweep logs a line per trial instead)."""
    if OPTIONS.quiet or not _STDERR.alive or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc="sweep", unit="trial", file=sys.stderr,
        dynamic_ncols=True, leave=False,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Errors -> exit codes


def exit_codes_help() -> str:
    """The exit-code list for --help (click keeps lines after \\b as they are)."""
    rows = [f"  {code.value:<4} {code.meaning}" for code in ExitCode]
    return "\b\nExit codes:\n" + "\n".join(rows) + "\n"


def exit_codes_markdown() -> str:
    """The README's exit-code table."""
    rows = [f"| {code.value} | {code.meaning} |" for code in ExitCode]
    return "\n".join(["| code | meaning |", "|---|---|", *rows]) + "\n"


def run(main: Callable[[], int | None]) -> int:
    """Run a command; every failure becomes one `Error:` line and its documented exit code."""
    try:
        code = main()
        return int(code) if isinstance(code, int) else ExitCode.OK
    except StdoutClosed:
        return ExitCode.STDOUT_CLOSED
    except (KeyboardInterrupt, Interrupted) as error:  # KeyboardInterrupt: no handler installed
        error_line(error if isinstance(error, Interrupted) else "interrupted")
        return error.exit_code if isinstance(error, Interrupted) else ExitCode.INTERRUPTED
    except BptrainError as error:
        _traceback()
        if getattr(error, "already_reported", False):  # each part had its own Error: line
            LOGGER.info(str(error))
        else:
            error_line(error)
        return error.exit_code
    except MemoryError:
        _traceback()
        error_line(
            "out of memory (a layer or batch too large for this machine?; try smaller units, "
            "filters or batch_size)"
        )
        return ExitCode.USAGE
    except Exception as error:  # a bug: still one line, and the way to learn more
        _traceback()
        error_line(
            f"internal error: {type(error).__name__}: {error} (this is a bug in bptrain; "
            "rerun with --traceback and report it)"
        )
        return ExitCode.INTERNAL


def _traceback() -> None:
    if OPTIONS.traceback or OPTIONS.verbose:
        _STDERR.write(traceback.format_exc())
