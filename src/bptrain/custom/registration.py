"""Your own layers in the layer registry: from the files a config names, from the files
`--layers` gives for a checkpoint, and from installed packages' entry points (plugins.py).

Loading code is the user's decision, never a checkpoint's. A config the user gives imports
the files it names. A checkpoint's config names files too, but those are imported only from
the copies given with `--layers`, matched by name and then by SHA-256 before anything is
imported: a checkpoint alone never makes bptrain import a file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..engine.layers import LAYERS, Layer
from ..errors import CheckpointError, ConfigError
from ..registry import FILE_TYPE
from . import plugins
from .adapter import as_layer
from .source import ClassRef, class_from, import_file, imported_sha256, sha256_of

log = logging.getLogger(__name__)

# The files `--layers` gave this command. The option's callback sets it; every command starts
# with none (cli.main resets it), so commands run one after another in a process share nothing.
_GIVEN: list[Path] = []


def give(paths: Iterable[str | Path]) -> None:
    """The files of your own layers the user named for this command (`--layers`)."""
    _GIVEN[:] = [Path(p) for p in paths]


def reset() -> None:
    """No files given: the state at the start of every command."""
    _GIVEN.clear()


def given() -> tuple[Path, ...]:
    return tuple(_GIVEN)


def layer_types(config: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, type) of each layer spec of a raw config whose type is a string."""
    model = config.get("model")
    layers = model.get("layers") if isinstance(model, Mapping) else None
    found = []
    for i, spec in enumerate(layers if isinstance(layers, list) else []):
        name = spec.get("type") if isinstance(spec, Mapping) else spec
        if isinstance(name, str):
            found.append((i, name))
    return found


def admit_config(data: dict[str, Any]) -> None:
    """load_config's hook for a config the user gives: its own layers into the registry.

    A `my_layers.py:Relu` type still relative here came from --set or stdin: it is relative
    to the current folder and made absolute, so the stored config (and a resume) finds the
    file from anywhere. A name bptrain does not know may be an installed entry point.
    """
    for i, name in layer_types(data):
        match = FILE_TYPE.match(name)
        try:
            if match is None:
                plugins.admit(name)
                continue
            path = Path(os.path.abspath(Path(match["file"]).expanduser()))
            absolute = f"{path}:{match['cls']}"
            _set_type(data, i, absolute)
            register_file(absolute, path)
        except ConfigError as error:
            hint = error.hint
            if match is not None and not Path(match["file"]).expanduser().exists():
                where = "a path in a config file is relative to the file's folder"
                hint = f"{hint}; {where}" if hint else where
            raise ConfigError(error.message, path=f"model.layers[{i}].type", hint=hint) from None


def _set_type(data: dict[str, Any], i: int, name: str) -> None:
    layers = data["model"]["layers"]
    if isinstance(layers[i], dict):
        layers[i]["type"] = name
    else:
        layers[i] = name


def register_file(type_name: str, path: Path) -> str:
    """Import `path`, register the class `type_name` names as that type; the file's SHA-256.

    `path` may differ from the file in `type_name`: a checkpoint's config keeps the training
    machine's path, and the user's copy given with --layers is registered under it.
    """
    match = FILE_TYPE.match(type_name)
    assert match is not None, type_name
    cls = class_from(ClassRef(path, match["cls"]))
    sha = imported_sha256(import_file(path))  # the bytes imported, not the file at save time
    source = {"type": type_name, "file": path.name, "sha256": sha}
    LAYERS.add_or_replace(type_name, as_layer(cls, type_name, source))
    return sha


def sources_of(layers: Iterable[Layer]) -> tuple[dict[str, Any], ...]:
    """Where the code of a network's own layers came from, once per type (checkpoints keep it)."""
    found: dict[str, dict[str, Any]] = {}
    for layer in layers:
        source = getattr(type(layer), "source", None)
        if not LAYERS.built_in(layer.name) and isinstance(source, dict):
            found.setdefault(source["type"], dict(source))
    return tuple(found.values())


def admit_checkpoint(
    config: Mapping[str, Any], recorded: Sequence[Mapping[str, Any]], label: str
) -> None:
    """The gate: register the own layers a checkpoint's config names, files only from --layers.

    A recorded file not given is exit 2 naming the option to add; a given file whose SHA-256
    is not the recorded one is refused (exit 4) before it is imported; a config naming a file
    that the record does not list was edited (exit 4).
    """
    by_type = {record["type"]: record for record in recorded}
    used: set[Path] = set()
    done: set[str] = set()
    for i, name in layer_types(config):
        if name in done:
            continue
        done.add(name)
        record = by_type.get(name)
        if FILE_TYPE.match(name):
            if record is None or "sha256" not in record:
                raise CheckpointError(
                    f"{label}: its config names {name!r} (model.layers[{i}]) but it records no "
                    "file and SHA-256 for it: the checkpoint was edited",
                    hint="use the checkpoint as training wrote it, or train again",
                )
            used.add(_admit_recorded_file(name, record, label))
        elif record is not None and "entry_point" in record:
            plugins.admit_recorded(name, record, label)
    for path in given():
        if path not in used:
            log.warning(f"--layers {path}: {label} uses no layers from it; not imported")


def _admit_recorded_file(name: str, record: Mapping[str, Any], label: str) -> Path:
    """The given file that is the recorded one (by name, then SHA-256), imported and registered."""
    file, recorded = record["file"], record["sha256"]
    candidates = [path for path in given() if path.name == file]
    if not candidates:
        raise ConfigError(
            f"{label} uses layers from {file} ({name}), and bptrain imports a file only when "
            "you name it",
            hint=f"add --layers {file}, giving the path of your copy",
        )
    now = {path: sha256_of(path) for path in candidates}
    chosen = next((path for path, sha in now.items() if sha == recorded), None)
    if chosen is None:
        path, sha = next(iter(now.items()))
        raise _changed(path, recorded, sha, label)
    imported = register_file(name, chosen)
    if imported != recorded:  # it changed between the check and the import
        raise _changed(chosen, recorded, imported, label)
    return chosen


def _changed(path: Path, recorded: str, now: str, label: str) -> CheckpointError:
    return CheckpointError(
        f"{path.name} changed since {label} was trained: sha256 {recorded[:12]}… recorded, "
        f"{now[:12]}… now ({path}); restore the file, or train again"
    )
