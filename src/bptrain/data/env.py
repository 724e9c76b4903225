"""Environment variables the data layer reads (the CLI passes explicit values on top)."""

from __future__ import annotations

import os

from ..errors import ConfigError

ENV_DATA_DIR = "BPTRAIN_DATA_DIR"
ENV_OFFLINE = "BPTRAIN_OFFLINE"
ENV_MIRROR = "BPTRAIN_MIRROR"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def env_mirrors() -> tuple[str, ...]:
    """Mirror URLs from BPTRAIN_MIRROR (whitespace-separated), in order."""
    return tuple(os.environ.get(ENV_MIRROR, "").split())


def env_offline() -> bool:
    """True when BPTRAIN_OFFLINE is set to 1/true/yes/on."""
    value = os.environ.get(ENV_OFFLINE, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{ENV_OFFLINE}={value!r} is neither true nor false", hint="use 1 or 0, or unset it"
    )


def resolve_offline(offline: bool | None) -> bool:
    """An explicit offline flag wins; None means ask the environment."""
    return env_offline() if offline is None else bool(offline)
