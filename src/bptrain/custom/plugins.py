"""Layers from installed packages: the entry-point group `bptrain.layers` (name -> module:Class).

A package declares, in its pyproject.toml:

    [project.entry-points."bptrain.layers"]
    my_relu = "mypkg.layers:Relu"

and a config may then say `{type: my_relu}`. Only an entry point a config (or a checkpoint's
config) names is loaded, when it is named: installing a package is the user's decision to run
its code, but bptrain never imports every plugin it could find.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

from ..engine.layers import LAYERS
from ..errors import CheckpointError, ConfigError
from .adapter import as_layer

GROUP = "bptrain.layers"

log = logging.getLogger(__name__)


def find(name: str) -> metadata.EntryPoint | None:
    """The installed entry point `name` of the group (reads metadata only, imports nothing)."""
    return next(iter(metadata.entry_points(group=GROUP, name=name)), None)


def source_of(entry: metadata.EntryPoint) -> dict[str, Any]:
    """What a checkpoint records about an entry point's layer."""
    dist = entry.dist
    return {
        "type": entry.name,
        "entry_point": entry.value,
        "distribution": dist.name if dist is not None else "unknown",
        "version": dist.version if dist is not None else "unknown",
    }


def admit(name: str) -> bool:
    """Register the layer entry point `name` stands for, if a package installs one.

    A built-in name wins over a plugin's of the same name: a config keeps meaning what it
    meant when a package that happens to use the name is installed.
    """
    if LAYERS.built_in(name):
        return False
    entry = find(name)
    if entry is None:
        return False
    source = source_of(entry)
    LAYERS.add_or_replace(name, as_layer(_load(entry, source), name, source))
    return True


def _load(entry: metadata.EntryPoint, source: dict[str, Any]) -> type:
    """The class an entry point names; any failure is one ConfigError naming it and its package."""
    package = f"{source['distribution']} {source['version']}"
    where = f"the entry point {entry.name} = {entry.value} ({GROUP}) of {package}"
    try:
        value = entry.load()
    except Exception as error:  # a plugin's import may raise anything
        raise ConfigError(
            f"layer {entry.name!r}: {where} failed to load: {type(error).__name__}: {error}",
            hint=f"fix or reinstall {source['distribution']}",
        ) from None
    if not isinstance(value, type):
        raise ConfigError(
            f"layer {entry.name!r}: {where} is a {type(value).__name__}, not a class",
            hint=f"point the entry point at a layer class in {source['distribution']}",
        )
    return value


def admit_recorded(name: str, record: dict[str, Any], label: str) -> None:
    """A checkpoint's entry-point layer: installed (a warning if another version), registered."""
    package = f"{record['distribution']} {record['version']}"
    if LAYERS.built_in(name):
        raise CheckpointError(
            f"{label} was trained with layer {name!r} from {package} ({record['entry_point']}), "
            f"but {name!r} is now one of bptrain's own layers",
            hint="train again, or use the bptrain version it was trained with",
        )
    entry = find(name)
    if entry is None:
        raise ConfigError(
            f"{label} was trained with layer {name!r} from {package} ({record['entry_point']}), "
            "which is not installed",
            hint=f"install it: pip install '{record['distribution']}=={record['version']}'",
        )
    now = source_of(entry)
    if (now["distribution"], now["version"], now["entry_point"]) != (
        record["distribution"],
        record["version"],
        record["entry_point"],
    ):
        log.warning(
            f"{label} was trained with layer {name!r} from {package} ({record['entry_point']}); "
            f"installed now: {now['distribution']} {now['version']} ({now['entry_point']})"
        )
    admit(name)
