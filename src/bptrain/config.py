"""Configs: YAML (safe, no duplicate keys, file:line kept) -> validated, frozen dataclasses."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ConfigErrors
from .initializers import INITIALIZERS  # noqa: F401  (registers initializers for layer checks)
from .layers import LAYERS
from .losses import LOSSES
from .optimizers import OPTIMIZERS
from .registry import describe, did_you_mean, type_matches, unknown_name_error
from .schedules import SCHEDULES

DEFAULT_PRESET = "mlp"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-3 (YAML 1.1 makes them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML safely; return (data, {dotted path: line}); duplicate keys are errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        data = _construct(loader, node, "", lines, source) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"invalid YAML: {problem}", path=where) from None
    except (TypeError, RecursionError) as error:  # a list as a key; a self-referencing alias
        raise ConfigError(
            f"unsupported YAML ({error})", path=source, hint="use plain mappings, lists and scalars"
        ) from None
    finally:
        loader.dispose()
    return data, lines


def _construct(
    loader: _Loader, node: yaml.Node, path: str, lines: dict[str, int], source: str
) -> Any:
    """Build plain data from a node tree, recording the line of every key and item."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = f"{path}.{key}" if path else str(key)
            if key in out:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {lines[child]})",
                    path=f"{source}:{key_node.start_mark.line + 1}: {child}",
                    hint="keep one of them",
                )
            lines[child] = key_node.start_mark.line + 1
            out[key] = _construct(loader, value_node, child, lines, source)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, item, f"{path}[{i}]", lines, source)
            for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


# ---------------------------------------------------------------------------------------------
# The typed config


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where to find it, how much of it to use."""

    dataset: str = "mnist"
    dir: str | None = None
    mirrors: tuple[str, ...] = ()
    validation: int = 5000
    limit_train: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The layer stack (registry specs) and the loss."""

    layers: list | tuple = ()
    # A spec may be a bare registry name ("adam"); validated configs hold the dict form.
    loss: dict | str = field(default_factory=lambda: {"type": "softmax_with_loss"})


@dataclass(frozen=True)
class TrainConfig:
    """How long and in which batches to train, and what to do along the way."""

    epochs: int = 10
    batch_size: int = 100
    eval_batch_size: int = 1000
    schedule: dict | str | None = None
    early_stopping: int | None = None
    restore_best: bool = False


@dataclass(frozen=True)
class Config:
    """A whole run; `seed: null` means one is drawn (and recorded) at start."""

    seed: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: dict | str = field(default_factory=lambda: {"type": "sgd", "lr": 0.1})
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that `from_dict` turns back into this config."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

# Value rules beyond types: (section, key) -> (check, message).
_RULES: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("train", "epochs"): (lambda v: v >= 1, "must be >= 1"),
    ("train", "batch_size"): (lambda v: v >= 1, "must be >= 1"),
    ("train", "eval_batch_size"): (lambda v: v >= 1, "must be >= 1"),
    ("train", "early_stopping"): (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    ("data", "validation"): (lambda v: v >= 0, "must be >= 0"),
    ("data", "limit_train"): (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    ("", "seed"): (lambda v: v is None or 0 <= v < 2**63, "must be a non-negative integer"),
}


def _check_section(cls: type, raw: Any, path: str) -> list[ConfigError]:
    """Unknown keys, wrong types and broken value rules of one dataclass section."""
    if raw is None:  # `train:` with nothing under it means the defaults
        return []
    if not isinstance(raw, Mapping):
        return [ConfigError(f"expected a mapping, got {raw!r}", path=path)]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    errors = []
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in hints:
            guess = did_you_mean(str(key), names)
            errors.append(
                ConfigError(
                    f"unknown key (accepted: {', '.join(names)})",
                    path=where,
                    hint=f"did you mean '{guess}'?" if guess else None,
                )
            )
        elif not type_matches(value, hints[key]):
            errors.append(
                ConfigError(f"expected {describe(hints[key])}, got {value!r}", path=where)
            )
        elif (path, key) in _RULES and not _RULES[path, key][0](value):
            errors.append(ConfigError(f"{_RULES[path, key][1]}, got {value!r}", path=where))
    return errors


def _check_spec(registry: Any, spec: Any, path: str) -> list[ConfigError]:
    """Names, keys and types first; then construct the part to catch bad values too.

    Constructing needs no data (layers allocate weights only when the network is built), so a
    bad value such as `units: 0` is reported before any download starts.
    """
    errors = registry.check(spec, path)
    if not errors:
        try:
            registry.build(spec, path)
        except ConfigError as error:
            errors.append(error)
    return errors


def _check_parts(raw: Mapping[str, Any]) -> list[ConfigError]:
    """Registry specs inside the config: layers, loss, optimizer, schedule, dataset."""
    from .data import DATASETS  # the data layer owns the dataset table

    errors: list[ConfigError] = []
    model = raw.get("model") or {}
    if isinstance(model, Mapping):
        layers = model.get("layers", [])
        if isinstance(layers, list):
            for i, spec in enumerate(layers):
                errors += _check_spec(LAYERS, spec, f"model.layers[{i}]")
        if not layers:
            errors.append(ConfigError("the model has no layers", path="model.layers"))
        if "loss" in model:
            errors += _check_spec(LOSSES, model["loss"], "model.loss")
    if "optimizer" in raw:
        errors += _check_spec(OPTIMIZERS, raw["optimizer"], "optimizer")
    train = raw.get("train", {})
    if isinstance(train, Mapping) and train.get("schedule") is not None:
        errors += _check_spec(SCHEDULES, train["schedule"], "train.schedule")
    data = raw.get("data", {})
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    if isinstance(dataset, str) and dataset not in DATASETS:
        errors.append(unknown_name_error("dataset", dataset, DATASETS, "data.dataset"))
    return errors


def validate(raw: Any) -> list[ConfigError]:
    """Every problem of a raw config at once."""
    if not isinstance(raw, Mapping):
        return [
            ConfigError("a config must be a mapping with keys seed, data, model, optimizer, train")
        ]
    errors = _check_section(Config, {k: v for k, v in raw.items() if k not in SECTIONS}, "")
    for name, cls in SECTIONS.items():
        if name in raw:
            errors += _check_section(cls, raw[name], name)
    return errors + _check_parts(raw)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """A validated Config; raises ConfigErrors listing every problem."""
    errors = validate(raw)
    if errors:
        raise ConfigErrors(errors)
    sections = {}
    for name, cls in SECTIONS.items():
        values = dict(raw.get(name) or {})
        if name == "data" and "mirrors" in values:
            values["mirrors"] = tuple(values["mirrors"])
        if name == "model":
            values["layers"] = tuple(_normalized(LAYERS, s) for s in values.get("layers", ()))
            values["loss"] = _normalized(LOSSES, values.get("loss", "softmax_with_loss"))
        if name == "train" and values.get("schedule") is not None:
            values["schedule"] = _normalized(SCHEDULES, values["schedule"])
        sections[name] = cls(**values)
    optimizer = _normalized(OPTIMIZERS, raw.get("optimizer", {"type": "sgd", "lr": 0.1}))
    return Config(seed=raw.get("seed"), optimizer=optimizer, **sections)


def _normalized(registry: Any, spec: Any) -> dict[str, Any]:
    return _plain(registry.normalize(spec))


# ---------------------------------------------------------------------------------------------
# Sources: files, stdin, presets; --set overrides


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
    return Path(__file__).resolve().parents[2] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def read_source(name: str | None, stdin_text: typing.Callable[[], str]) -> tuple[str, str, str]:
    """(text, source label, run name) for a path, '-' (stdin) or a preset name."""
    name = name or DEFAULT_PRESET
    if name == "-":
        return stdin_text(), "<stdin>", "stdin"
    path = Path(name)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from None
    preset = presets_dir() / f"{name}.yaml"
    if preset.is_file() and "/" not in name:
        return preset.read_text(encoding="utf-8"), f"{name}.yaml", name
    presets = preset_names()
    guess = did_you_mean(name, presets)
    raise ConfigError(
        f"config {name!r} is neither a file nor a preset; presets: {', '.join(presets)}",
        hint=f"did you mean '{guess}'?"
        if guess
        else "give a YAML path, '-' for stdin, or a preset",
    )


SET_LINE = 0  # the "line" of a value that came from --set rather than from the file

_SET_KEY = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """'model.layers[1].units=200' -> (['model', 'layers', 1, 'units'], 200)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _SET_KEY.match(key):
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE such as train.epochs=3 or "
            "'model.layers[1].units=200'"
        )
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", key)
    ]
    parsed, _ = parse_yaml(value, f"--set {key}") if value.strip() else (None, {})
    return parts, parsed


def apply_overrides(raw: Any, overrides: Iterable[str], lines: dict[str, int] | None = None) -> Any:
    """Set each KEY=VALUE into the raw config, creating mappings on the way as needed.

    In `lines`, the overridden paths are marked SET_LINE: their errors point at --set, not at
    the line of the file whose value was replaced.
    """
    for text in overrides:
        parts, value = parse_override(text)
        if lines is not None:
            key = _dotted(parts)
            for known in [k for k in lines if k == key or k.startswith((key + ".", key + "["))]:
                del lines[known]
            for depth in range(1, len(parts) + 1):  # mappings --set creates come from it too
                lines.setdefault(_dotted(parts[:depth]), SET_LINE)
            lines[key] = SET_LINE
        node = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = _dotted(parts[: depth + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or not -len(node) <= part < len(node):
                    size = len(node) if isinstance(node, list) else 0
                    raise ConfigError(f"--set {text!r}: {where} does not exist ({size} items)")
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {_dotted(parts[:depth])} is not a mapping")
            if last:
                node[part] = value
            else:
                if isinstance(part, str) and node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return raw


def _dotted(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def load_config(
    name: str | None,
    overrides: Iterable[str] = (),
    stdin_text: typing.Callable[[], str] = lambda: "",
    raw: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Read, override and validate a config; every error names file:line and dotted path."""
    if raw is None:
        text, source, run_name = read_source(name, stdin_text)
        data, lines = parse_yaml(text, source)
    else:
        data, lines, source, run_name = _plain(raw), {}, name or "<checkpoint>", name or "resumed"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a config must be a mapping with keys seed, data, model, optimizer, train"
        )
    data = apply_overrides(data, overrides, lines)
    loaded = LoadedConfig(Config(), source, lines, run_name)
    try:
        loaded.config = from_dict(data)
    except ConfigErrors as errors:
        raise ConfigErrors([loaded.locate(e) for e in errors.errors]) from None
    return loaded
