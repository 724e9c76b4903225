"""The error family and the one ExitCode enum: every exit code bptrain can end with is here."""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes; `--help` and the README's table are written from this enum."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    DATA = 3
    CHECKPOINT = 4
    DIVERGED = 5
    INTERNAL = 70  # EX_SOFTWARE from sysexits.h
    OUTPUT = 74  # EX_IOERR: stdout could not be written (a full disk)
    HANGUP = 128 + signal.SIGHUP  # 129
    INTERRUPTED = 128 + signal.SIGINT  # 130
    STDOUT_CLOSED = 128 + signal.SIGPIPE  # 141, as for any Unix tool in `| head`
    TERMINATED = 128 + signal.SIGTERM  # 143

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "ok",
    ExitCode.CHECK_FAILED: (
        "check failed (gradcheck over tolerance, a layer failing `check`, an export that "
        "disagrees, accuracy target missed)"
    ),
    ExitCode.USAGE: "usage or config error",
    ExitCode.DATA: "data error (missing, corrupt or unreachable data)",
    ExitCode.CHECKPOINT: "checkpoint or output file error (unreadable, edited, in use; --out "
    "exists, is not a regular file, or cannot be written)",
    ExitCode.DIVERGED: "training diverged (non-finite loss, gradient or validation loss)",
    ExitCode.INTERNAL: "internal error (a bug in bptrain; --traceback shows where)",
    ExitCode.OUTPUT: "stdout could not be written (e.g. a full disk)",
    ExitCode.HANGUP: "hung up (SIGHUP); train writes a checkpoint first",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); train writes a checkpoint first",
    ExitCode.STDOUT_CLOSED: "stdout closed early (e.g. | head); train checkpoints first",
    ExitCode.TERMINATED: "terminated (SIGTERM: timeout, docker stop, Slurm); train checkpoints",
}


class BptrainError(Exception):
    """Base of every error bptrain reports to a user (one line: what, where, how to fix)."""

    exit_code = ExitCode.CHECK_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CheckFailed(BptrainError):
    """A check ran and failed: gradcheck over tolerance, accuracy target missed."""

    exit_code = ExitCode.CHECK_FAILED


class ConfigError(BptrainError):
    """A bad config value, layer stack, registry name or command-line usage.

    `path` is the dotted location in the config (``model.layers[2].units``); callers that know
    an outer location prefix it with `within`, so a nested error still names its full path.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path

    def within(self, prefix: str) -> ConfigError:
        """Return this error with `prefix` put in front of its path."""
        if not prefix:
            return self
        path = (
            f"{prefix}{'' if self.path.startswith('[') else '.'}{self.path}"
            if self.path
            else prefix
        )
        return ConfigError(self.message, path=path, hint=self.hint)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ConfigErrors(ConfigError):
    """Several config errors reported at once (one per line)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class DataError(BptrainError):
    """Missing, corrupt or unreachable data."""

    exit_code = ExitCode.DATA


class CheckpointError(BptrainError):
    """A checkpoint that cannot be read, written or trusted."""

    exit_code = ExitCode.CHECKPOINT


class DestinationError(CheckpointError):
    """A file bptrain was asked to write: it exists (no --overwrite), is not a regular file, or
    cannot be written (read-only, full). Exit 4, as for checkpoints; see bptrain.files."""


class DivergedError(BptrainError):
    """Training produced a non-finite loss, gradient or validation loss."""

    exit_code = ExitCode.DIVERGED


class OutputError(BptrainError):
    """stdout could not be written (not a closed pipe: that ends quietly with 141)."""

    exit_code = ExitCode.OUTPUT


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head -n 1`): end quietly with 141."""


_SIGNAL_CODES = {
    signal.SIGINT: ExitCode.INTERRUPTED,
    signal.SIGTERM: ExitCode.TERMINATED,
    signal.SIGHUP: ExitCode.HANGUP,
}
_SIGNAL_WORDS = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated",
    signal.SIGHUP: "hung up",
}


class Interrupted(BptrainError):
    """Ctrl-C, SIGTERM or SIGHUP; the exit code is 128 + the signal's number."""

    def __init__(
        self, message: str | None = None, *, signum: int = signal.SIGINT, hint: str | None = None
    ) -> None:
        super().__init__(message or signal_word(signum), hint=hint)
        self.signum = signum
        self.exit_code = _SIGNAL_CODES.get(signum, ExitCode.INTERRUPTED)


def signal_word(signum: int) -> str:
    """'interrupted' (SIGINT), 'terminated' (SIGTERM), 'hung up' (SIGHUP)."""
    name = signal.Signals(signum).name
    return f"{_SIGNAL_WORDS.get(signum, 'stopped')} ({name})"
