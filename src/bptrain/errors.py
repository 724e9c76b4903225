"""The error family: each error knows the exit code the CLI reports for it."""

from __future__ import annotations


class BptrainError(Exception):
    """Base of every error bptrain reports to a user (one line: what, where, how to fix)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CheckFailed(BptrainError):
    """A check ran and failed: gradcheck over tolerance, accuracy target missed."""

    exit_code = 1


class ConfigError(BptrainError):
    """A bad config value, layer stack, registry name or command-line usage.

    `path` is the dotted location in the config (``model.layers[2].units``); callers that know
    an outer location prefix it with `within`, so a nested error still names its full path.
    """

    exit_code = 2

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

    exit_code = 3


class CheckpointError(BptrainError):
    """A checkpoint that cannot be read, written or trusted."""

    exit_code = 4


class DivergedError(BptrainError):
    """Training produced a non-finite loss or gradient."""

    exit_code = 5


class Interrupted(BptrainError):
    """The user pressed Ctrl-C."""

    exit_code = 130
