"""Where a config comes from (a file, stdin, a preset, a checkpoint) and load_config, which
reads, overrides and validates it, pointing every error at file:line."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, ConfigErrors
from ..registry import FILE_TYPE, Parts, suggestion
from .overrides import SET_LINE, apply_dataset_settings, apply_overrides
from .schema import Config, from_dict, plain_data
from .yaml import parse_yaml

DEFAULT_PRESET = "mlp"


@dataclass
class LoadedConfig:
    """A config with where it came from, so later errors can point at file:line."""

    config: Config
    source: str
    lines: dict[str, int]
    name: str

    def locate(self, error: ConfigError) -> ConfigError:
        """The error with `source:line:` put in front of its path (nearest known ancestor)."""
        if not error.path or ":" in error.path.split(".")[0]:
            return error
        path = error.path
        while path and path not in self.lines:
            parent = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", path)
            path = "" if parent == path else parent  # a top-level key has no parent
        line = self.lines.get(path) if path else None
        if line == SET_LINE:
            where = "--set "
        else:
            where = f"{self.source}:{line}: " if line else f"{self.source}: "
        return ConfigError(error.message, path=where + error.path, hint=error.hint)


def presets_dir() -> Path:
    """Presets ship inside the wheel (bptrain/configs); a source checkout has them in configs/."""
    packaged = Path(str(resources.files("bptrain"))) / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_description(name: str) -> str:
    """A preset's one-line summary: its first comment, `# NAME: what it is`, without the name."""
    with open(presets_dir() / f"{name}.yaml", encoding="utf-8") as handle:
        first = handle.readline().lstrip("#").strip()
    return first.removeprefix(f"{name}:").strip()


class Source(NamedTuple):
    """A config's text, its label in messages, its run name, and the folder of its file."""

    text: str
    label: str
    run_name: str
    folder: Path | None = None  # None for stdin and presets: nothing to resolve against


def read_source(name: str | None, stdin_text: typing.Callable[[], str]) -> Source:
    """The config a path, '-' (stdin) or a preset name stands for."""
    name = name or DEFAULT_PRESET
    if name == "-":
        return Source(stdin_text(), "<stdin>", "stdin")
    path = Path(name)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from None
        return Source(text, str(path), path.stem, path.parent)
    preset = presets_dir() / f"{name}.yaml"
    if preset.is_file() and "/" not in name:
        return Source(preset.read_text(encoding="utf-8"), f"{name}.yaml", name)
    presets = preset_names()
    raise ConfigError(
        f"config {name!r} is neither a file nor a preset; presets: {', '.join(presets)}",
        hint=suggestion(name, presets) or "give a YAML path, '-' for stdin, or a preset",
    )


def resolve_data_dir(data: dict[str, Any], folder: Path) -> None:
    """Make a relative `data.dir` in a config file relative to the file's folder, in place.

    A config that points at ``../shared/data`` then works from any working directory. Values
    from --set and stdin have no file to be relative to and stay relative to the current
    folder; ``~/...`` is left for the data layer to expand. The resolved path is absolute, so
    `--print-config` output still means the same folder when read back from elsewhere.
    """
    section = data.get("data")
    value = section.get("dir") if isinstance(section, dict) else None
    if not isinstance(value, str) or not value or value.startswith("~"):
        return
    if not Path(value).is_absolute():
        section["dir"] = str((folder / value).resolve())  # type: ignore[index]


def resolve_layer_files(data: dict[str, Any], folder: Path) -> None:
    """Make the relative file of each `{type: my_layers.py:Relu}` layer absolute, in place.

    As for data.dir (resolve_data_dir): a path in a config file is relative to the file's
    folder, one from --set or stdin to the current folder (the `admit` hook of load_config
    does that). Symlinks are kept: the file's own name is what a checkpoint records.
    """
    model = data.get("model")
    layers = model.get("layers") if isinstance(model, dict) else None
    for i, spec in enumerate(layers if isinstance(layers, list) else []):
        name = spec.get("type") if isinstance(spec, dict) else spec
        match = FILE_TYPE.match(name) if isinstance(name, str) else None
        if match is None or match["file"].startswith("~") or Path(match["file"]).is_absolute():
            continue
        absolute = f"{os.path.abspath(folder / match['file'])}:{match['cls']}"
        if isinstance(spec, dict):
            spec["type"] = absolute
        else:
            layers[i] = absolute  # type: ignore[index]


def load_config(
    name: str | None,
    overrides: Iterable[str] = (),
    *,
    parts: Parts,
    stdin_text: typing.Callable[[], str] = lambda: "",
    raw: Mapping[str, Any] | None = None,
    admit: typing.Callable[[dict[str, Any]], None] | None = None,
) -> LoadedConfig:
    """Read, override and validate a config; every error names file:line and dotted path.

    `name` is a YAML path, '-' (stdin) or a preset; with `raw` (a checkpoint's stored config)
    nothing is read and `name` only labels messages. A relative `data.dir` in a config file is
    relative to the file's folder (see resolve_data_dir), and so is the file of a layer type
    `my_layers.py:Relu` (resolve_layer_files). `parts` is what specs may name:
    bptrain.parts.PARTS. `admit`, given the raw data once --set is applied and before it is
    validated, may register what it names that `parts` does not know yet (a user's own layers:
    bptrain.custom.registration.admit_config); a checkpoint's stored config gets none.
    """
    data, loaded = _read_raw(name, stdin_text, raw)
    data = apply_overrides(data, overrides, loaded.lines)
    try:
        if admit is not None:
            admit(data)
        data = apply_dataset_settings(data, loaded.lines, parts, overrides)
        loaded.config = from_dict(data, parts=parts)
    except ConfigErrors as errors:  # before ConfigError, its base class
        raise ConfigErrors([loaded.locate(e) for e in errors.errors]) from None
    except ConfigError as error:  # a for_dataset entry that cannot apply
        raise loaded.locate(error) from None
    return loaded


def _read_raw(
    name: str | None, stdin_text: typing.Callable[[], str], raw: Mapping[str, Any] | None
) -> tuple[dict[str, Any], LoadedConfig]:
    """The raw config as a mapping, and a LoadedConfig (default config) naming its source."""
    if raw is None:
        source = read_source(name, stdin_text)
        label, run_name = source.label, source.run_name
        data, lines = parse_yaml(source.text, label)
        if isinstance(data, dict) and source.folder is not None:
            resolve_data_dir(data, source.folder)
            resolve_layer_files(data, source.folder)
    else:
        data, lines, label, run_name = (
            plain_data(raw),
            {},
            name or "<checkpoint>",
            name or "resumed",
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: a config must be a mapping with keys seed, data, model, optimizer, train"
        )
    return data, LoadedConfig(Config(), label, lines, run_name)
