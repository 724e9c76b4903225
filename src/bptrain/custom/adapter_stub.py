"""A stand-in for custom/adapter.py until it is merged: bptrain Layer subclasses only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.layers import Layer
from ..errors import ConfigError


def as_layer(cls: type, type_name: str, source: Mapping[str, Any]) -> type[Layer]:
    """A Layer class for `cls`, to register as `type_name`; `source` is kept on it."""
    if isinstance(cls, type) and issubclass(cls, Layer):
        attrs = {"name": type_name, "source": dict(source), "__module__": cls.__module__}
        return type(cls.__name__, (cls,), attrs)
    raise ConfigError(f"{type_name}: not a bptrain Layer (book-style classes come later)")
