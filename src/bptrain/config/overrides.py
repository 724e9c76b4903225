"""Changes on top of a config file: --set KEY=VALUE, and the for_dataset table's settings for
the run's dataset. Both record in the line table that their values did not come from the file."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..registry import Parts, unknown_name_error
from .schema import DataConfig
from .yaml import parse_yaml

SET_LINE = 0  # the "line" of a value that came from --set rather than from the file

_SET_KEY = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")


def parse_key(key: str, path: str) -> list[str | int]:
    """'model.layers[1].units' -> ['model', 'layers', 1, 'units']; `path` is where it's written."""
    if not _SET_KEY.match(key):
        raise ConfigError(
            f"{key!r} is not a dotted key such as train.epochs or 'model.layers[1].units'",
            path=path,
        )
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", key)]


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """'model.layers[1].units=200' -> (['model', 'layers', 1, 'units'], 200)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _SET_KEY.match(key):
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE such as train.epochs=3 or "
            "'model.layers[1].units=200'"
        )
    parsed, _ = parse_yaml(value, f"--set {key}", numbered=False) if value.strip() else (None, {})
    return parse_key(key, "--set"), parsed


def assign(raw: Any, parts: list[str | int], value: Any, label: str = "", path: str = "") -> None:
    """Set `value` at `parts` in the raw config, creating mappings on the way as needed.

    When the path cannot exist the error starts with `label` (a --set) or is at `path` (a
    for_dataset entry, whose line the caller knows).
    """
    prefix = f"{label}: " if label else ""
    node = raw
    for depth, part in enumerate(parts):
        where = _dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"{prefix}{where} does not exist ({size} items)", path=path)
        elif not isinstance(node, dict):
            raise ConfigError(f"{prefix}{_dotted(parts[:depth])} is not a mapping", path=path)
        if depth == len(parts) - 1:
            node[part] = value
        else:
            if isinstance(part, str) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def apply_overrides(raw: Any, overrides: Iterable[str], lines: dict[str, int] | None = None) -> Any:
    """Set each KEY=VALUE into the raw config, creating mappings on the way as needed.

    In `lines`, the overridden paths are marked SET_LINE: their errors point at --set, not at
    the line of the file whose value was replaced.
    """
    for text in overrides:
        parts, value = parse_override(text)
        if lines is not None:
            _mark_set(lines, parts)
        assign(raw, parts, value, label=f"--set {text!r}")
    return raw


FOR_DATASET = "for_dataset"


def apply_dataset_settings(
    raw: dict[str, Any], lines: dict[str, int], parts: Parts, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Take `for_dataset` out of the raw config and apply the settings it lists for the run's
    dataset (data.dataset, after --set), so that one preset serves datasets that need, say,
    different epochs::

        for_dataset:
          fashion-mnist: {train.epochs: 30}

    Keys are --set's dotted paths, values replace what the file wrote. A key --set gave as well
    (or a path inside or around one) is left to --set: the command line has the last word.
    The resolved config, as --print-config shows and a checkpoint stores it, has no
    for_dataset left: it is the config of the one dataset the run uses.
    """
    table = raw.pop(FOR_DATASET, None)
    if table is None:
        return raw
    paths = _dataset_table_paths(table, parts)
    data = raw.get("data") or {}
    dataset = data.get("dataset", DataConfig.dataset) if isinstance(data, Mapping) else None
    given = [parse_override(text)[0] for text in overrides]
    for key, value in (table.get(dataset) or {}).items():
        where, path = f"{FOR_DATASET}.{dataset}.{key}", paths[dataset][key]
        _check_settable_per_dataset(path, where)
        if any(g[: len(path)] == path or path[: len(g)] == g for g in given):
            continue  # --set gave this path (or one inside or around it): it wins
        _mark_set(lines, path, lines.get(where, SET_LINE))
        assign(raw, path, value, path=where)
    return raw


def _dataset_table_paths(table: Any, parts: Parts) -> dict[Any, dict[Any, list[str | int]]]:
    """Every for_dataset entry checked and its keys parsed, whichever dataset the run uses, so
    that a typo under another dataset is found now rather than on the day that dataset runs."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"expected a mapping of dataset names to settings, got {table!r}",
            path=FOR_DATASET,
            hint="e.g. for_dataset: {fashion-mnist: {train.epochs: 30}}",
        )
    paths: dict[Any, dict[Any, list[str | int]]] = {}
    for name, settings in table.items():
        where = f"{FOR_DATASET}.{name}"
        if name not in parts.datasets:
            raise unknown_name_error("dataset", name, parts.datasets, where, parts.dataset_aliases)
        if not isinstance(settings, Mapping):
            raise ConfigError(
                f"expected a mapping of dotted keys to values, got {settings!r}",
                path=where,
                hint="e.g. {train.epochs: 30, 'model.layers[12].rate': 0.4}",
            )
        paths[name] = {key: parse_key(str(key), f"{where}.{key}") for key in settings}
    return paths


def _check_settable_per_dataset(path: list[str | int], where: str) -> None:
    """A for_dataset entry may not set what chooses the entry: the dataset, or the table."""
    if path[0] == FOR_DATASET or path[:2] == ["data", "dataset"]:
        raise ConfigError(
            "cannot be set here: for_dataset is chosen by data.dataset",
            path=where,
            hint="set the dataset with data.dataset or --set data.dataset=NAME",
        )


def _mark_set(lines: dict[str, int], parts: list[str | int], line: int = SET_LINE) -> None:
    """Record in `lines` that --set (or the for_dataset entry on `line`) gave the value at
    `parts` (see apply_overrides)."""
    key = _dotted(parts)
    for known in [k for k in lines if k == key or k.startswith((key + ".", key + "["))]:
        del lines[known]
    for depth in range(1, len(parts) + 1):  # mappings --set creates come from it too
        lines.setdefault(_dotted(parts[:depth]), line)
    lines[key] = line
    if len(parts) > 1 and parts[-1] == "type":
        # A new type makes a new part: what it misses (conv2d's filters) is --set's doing,
        # though the keys the file wrote for the old type keep their lines.
        lines[_dotted(parts[:-1])] = line


def _dotted(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
