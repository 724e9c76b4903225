"""Configs: YAML (safe, no duplicate keys, file:line kept) -> validated, frozen dataclasses.

This module imports no registry: what a config may name (layers, losses, optimizers,
schedules, datasets) comes in as `parts` (bptrain.parts.PARTS), so the config layer sits below
the parts it checks.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import ConfigError, ConfigErrors
from ..registry import Parts, Registry, describe, suggestion, type_matches, unknown_name_error

DEFAULT_PRESET = "mlp"

# The most values one YAML text may expand to. Aliases let a few lines stand for billions of
# values ("billion laughs"); real configs have a few hundred, so this only stops such bombs.
MAX_YAML_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-3 (YAML 1.1 makes them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_STD = "tag:yaml.org,2002:"
# The tags plain YAML resolves by itself; any other tag (!!python/..., !!binary, !custom) was
# written on purpose, and SafeLoader would either refuse it or, on a mapping, quietly drop it.
_PLAIN_TAGS = {_STD + t for t in ("null", "bool", "int", "float", "str", "timestamp", "map", "seq")}


def parse_yaml(text: str, source: str, *, numbered: bool = True) -> tuple[Any, dict[str, int]]:
    """Parse YAML safely; return (data, {dotted path: line}); duplicate keys are errors.

    `numbered=False` (a --set value) leaves line numbers out of error locations.
    """
    loader = _Loader(text)
    builder = _Builder(loader, source, numbered)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"config uses YAML aliases that expand to more than {MAX_YAML_VALUES} values",
                path=source,
                hint="write the values out, or use aliases that nest less deeply",
            )
        data = builder.build(node, "") if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"invalid YAML: {problem}", path=builder.at(mark)) from None
    except (TypeError, RecursionError) as error:  # a list as a key; a self-referencing alias
        raise ConfigError(
            f"unsupported YAML ({error})", path=source, hint="use plain mappings, lists and scalars"
        ) from None
    finally:
        loader.dispose()
    return data, builder.lines


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the tree under `node` holds once every alias is expanded.

    Each node is counted once (an alias is the same node object again), so this takes time in
    proportion to the text, not to the expansion, and refuses a bomb before anything is built.
    """
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node inside itself counts once here; building it fails later
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


# A mapping's entries: (key, key node, value node).
_Entry = tuple[Any, yaml.Node, yaml.Node]


class _Builder:
    """Plain data from a node tree, recording the line of every key and item.

    It walks every path an alias is used on (each path gets its own line): parse_yaml has
    checked first that they add up to at most MAX_YAML_VALUES. Merge keys (<<) are resolved
    here too: keys written in the mapping override merged ones, the first merged mapping wins
    among those, and a merged anchor is flattened once however often it is merged.
    """

    def __init__(self, loader: _Loader, source: str, numbered: bool) -> None:
        self.loader, self.source, self.numbered = loader, source, numbered
        self.lines: dict[str, int] = {}
        self._merged: dict[int, list[_Entry]] = {}  # a merged anchor is flattened once

    def at(self, mark: Any, path: str = "") -> str:
        """An error location: source:line (when numbered), then the dotted path."""
        where = f"{self.source}:{mark.line + 1}" if mark and self.numbered else self.source
        return f"{where}: {path}" if path else where

    def _check_tag(self, node: yaml.Node, path: str) -> None:
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace(_STD, "!!")
            raise ConfigError(
                f"YAML tags are not supported (found {tag})",
                path=self.at(node.start_mark, path),
                hint="remove the tag; a config is plain mappings, lists and scalars",
            )

    def build(self, node: yaml.Node, path: str) -> Any:
        self._check_tag(node, path)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[Any, Any]:
        own, merged = self._entries(node, path)
        first: dict[Any, int] = {}
        for key, key_node, _ in own:
            child = f"{path}.{key}" if path else str(key)
            if key in first:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {first[key]})",
                    path=self.at(key_node.start_mark, child),
                    hint="keep one of them",
                )
            first[key] = key_node.start_mark.line + 1
        out: dict[Any, Any] = {}
        for key, key_node, value_node in [*(e for e in merged if e[0] not in first), *own]:
            child = f"{path}.{key}" if path else str(key)
            out[key] = self.build(value_node, child)
            self.lines[child] = key_node.start_mark.line + 1
        return out

    def _entries(self, node: yaml.MappingNode, path: str) -> tuple[list[_Entry], list[_Entry]]:
        """(the entries written in the mapping, the merged ones not repeated among those)."""
        own: list[_Entry] = []
        merged: dict[Any, _Entry] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _STD + "merge":
                own.append((self._key(key_node, path), key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                for entry in self._flattened(source, path):
                    merged.setdefault(entry[0], entry)
        return own, list(merged.values())

    def _flattened(self, node: yaml.Node, path: str) -> list[_Entry]:
        """A merged mapping's effective entries: its own, and those it merges that it lacks."""
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(
                "<< merges a mapping or a list of mappings",
                path=self.at(node.start_mark, path),
            )
        if id(node) not in self._merged:
            self._merged[id(node)] = []  # a merge cycle ends here instead of recursing
            own, merged = self._entries(node, path)
            written = {entry[0]: entry for entry in own}  # of duplicates, the last one wins
            self._merged[id(node)] = [
                *(e for e in merged if e[0] not in written),
                *written.values(),
            ]
        return self._merged[id(node)]

    def _key(self, key_node: yaml.Node, path: str) -> Any:
        if key_node.tag == _STD + "value":  # a bare "=" key, which SafeLoader reads as "="
            key_node.tag = _STD + "str"
        self._check_tag(key_node, path)
        return self.loader.construct_object(key_node, deep=True)


# ---------------------------------------------------------------------------------------------
# The typed config


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where to find it, how much of it to use.

    `dir` written in a config file is relative to that file's folder (load_config makes it
    absolute); given by --set or on stdin it is relative to the current folder.
    """

    dataset: str = "mnist"
    dir: str | None = None
    mirrors: tuple[str, ...] = ()
    validation: int = 5000
    limit_train: int | None = None
    # Random transforms of each training batch (augment.py), e.g. [{type: shift, pixels: 2}].
    augment: list | tuple = ()


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
    # Under MPI: BatchNorm statistics of the whole batch (summed over the ranks) instead of
    # each rank's own slice, at the price of two small Allreduces per BatchNorm layer and step.
    sync_batch_norm: bool = False
    # Decay of an exponential moving average of the weights (e.g. 0.999): validation, test and
    # the saved model use the averaged weights; null trains and tests the raw weights.
    ema: float | None = None


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
    ("train", "ema"): (lambda v: v is None or 0 < v < 1, "must be between 0 and 1 or null"),
    ("data", "validation"): (lambda v: v >= 0, "must be >= 0"),
    ("data", "limit_train"): (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    ("", "seed"): (lambda v: v is None or 0 <= v < 2**63, "must be a non-negative integer"),
}


# Other names for section keys, suggested (never accepted) when a config uses them.
_KEY_ALIASES: dict[str, dict[str, str]] = {
    "data": {"path": "dir", "folder": "dir", "root": "dir", "val_size": "validation"},
    "train": {"patience": "early_stopping", "batch": "batch_size", "scheduler": "schedule"},
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
            errors.append(
                ConfigError(
                    f"unknown key (accepted: {', '.join(names)})",
                    path=where,
                    hint=suggestion(key, names, _KEY_ALIASES.get(path)),
                )
            )
        elif not type_matches(value, hints[key]):
            errors.append(
                ConfigError(f"expected {describe(hints[key])}, got {value!r}", path=where)
            )
        elif (path, key) in _RULES and not _RULES[path, key][0](value):
            errors.append(ConfigError(f"{_RULES[path, key][1]}, got {value!r}", path=where))
    return errors


def _check_spec(registry: Registry, spec: Any, path: str) -> list[ConfigError]:
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


def _check_model(model: Any, parts: Parts) -> list[ConfigError]:
    """The layer specs (there must be some) and the loss."""
    if not isinstance(model, Mapping):
        return []  # _check_section reported it
    errors: list[ConfigError] = []
    layers = model.get("layers", [])
    if isinstance(layers, list):
        for i, spec in enumerate(layers):
            errors += _check_spec(parts.layers, spec, f"model.layers[{i}]")
    if not layers:
        errors.append(ConfigError("the model has no layers", path="model.layers"))
    if "loss" in model:
        errors += _check_spec(parts.losses, model["loss"], "model.loss")
    return errors


def _check_parts(raw: Mapping[str, Any], parts: Parts) -> list[ConfigError]:
    """Registry specs inside the config: layers, loss, optimizer, schedule, dataset."""
    errors = _check_model(raw.get("model") or {}, parts)
    if "optimizer" in raw:
        errors += _check_spec(parts.optimizers, raw["optimizer"], "optimizer")
    train = raw.get("train", {})
    if isinstance(train, Mapping) and train.get("schedule") is not None:
        errors += _check_spec(parts.schedules, train["schedule"], "train.schedule")
    data = raw.get("data", {})
    augment = data.get("augment") if isinstance(data, Mapping) else None
    if isinstance(augment, list) and parts.augmentations is not None:
        for i, spec in enumerate(augment):
            errors += _check_spec(parts.augmentations, spec, f"data.augment[{i}]")
            for key in ("not_on", "only_on"):
                names = spec.get(key) if isinstance(spec, Mapping) else None
                errors += [
                    unknown_name_error(
                        "dataset", name, parts.datasets, f"data.augment[{i}].{key}",
                        parts.dataset_aliases,
                    )
                    for name in (names if isinstance(names, list) else [])
                    if isinstance(name, str) and name not in parts.datasets
                ]  # fmt: skip
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    if isinstance(dataset, str) and dataset not in parts.datasets:
        errors.append(
            unknown_name_error(
                "dataset", dataset, parts.datasets, "data.dataset", parts.dataset_aliases
            )
        )
    return errors


def _check_relations(raw: Mapping[str, Any]) -> list[ConfigError]:
    """Settings each fine alone that cannot work together (run once the types are right)."""
    data, train = raw.get("data") or {}, raw.get("train") or {}
    errors = []
    if data.get("validation", DataConfig.validation) == 0:
        used = {
            "restore_best": bool(train.get("restore_best")),
            "early_stopping": train.get("early_stopping") is not None,
        }
        errors += [
            ConfigError(
                "needs a validation set (data.validation > 0)",
                path=f"train.{key}",
                hint="hold out some training samples, e.g. data.validation: 5000",
            )
            for key, on in used.items()
            if on
        ]
    schedule, epochs = train.get("schedule"), train.get("epochs", TrainConfig.epochs)
    warmup = schedule.get("warmup", 0) if isinstance(schedule, Mapping) else 0
    if warmup >= epochs:
        errors.append(
            ConfigError(
                f"a warm-up of {warmup} epochs does not end before the last epoch "
                f"(train.epochs is {epochs})",
                path="train.schedule.warmup",
                hint="warm up for a fraction of the run, e.g. 1 epoch",
            )
        )
    return errors


def validate(raw: Any, *, parts: Parts) -> list[ConfigError]:
    """Every problem of a raw config at once."""
    if not isinstance(raw, Mapping):
        return [
            ConfigError("a config must be a mapping with keys seed, data, model, optimizer, train")
        ]
    errors = _check_section(Config, {k: v for k, v in raw.items() if k not in SECTIONS}, "")
    for name, cls in SECTIONS.items():
        if name in raw:
            errors += _check_section(cls, raw[name], name)
    errors += _check_parts(raw, parts)
    return errors or _check_relations(raw)


def from_dict(raw: Mapping[str, Any], *, parts: Parts) -> Config:
    """A validated Config; raises ConfigErrors listing every problem."""
    errors = validate(raw, parts=parts)
    if errors:
        raise ConfigErrors(errors)
    sections = {}
    for name, cls in SECTIONS.items():
        values = dict(raw.get(name) or {})
        if name == "data" and "mirrors" in values:
            values["mirrors"] = tuple(values["mirrors"])
        if name == "data" and parts.augmentations is not None:
            values["augment"] = tuple(
                _normalized(parts.augmentations, s) for s in values.get("augment", ())
            )
        if name == "model":
            values["layers"] = tuple(_normalized(parts.layers, s) for s in values.get("layers", ()))
            values["loss"] = _normalized(parts.losses, values.get("loss", "softmax_with_loss"))
        if name == "train" and values.get("schedule") is not None:
            values["schedule"] = _normalized(parts.schedules, values["schedule"])
        sections[name] = cls(**values)
    optimizer = _normalized(parts.optimizers, raw.get("optimizer", {"type": "sgd", "lr": 0.1}))
    return Config(seed=raw.get("seed"), optimizer=optimizer, **sections)


def _normalized(registry: Registry, spec: Any) -> dict[str, Any]:
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
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"expected a mapping of dataset names to settings, got {table!r}",
            path=FOR_DATASET,
            hint="e.g. for_dataset: {fashion-mnist: {train.epochs: 30}}",
        )
    paths: dict[str, dict[Any, list[str | int]]] = {}  # every entry's key parsed, on every run
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
    data = raw.get("data") or {}
    dataset = data.get("dataset", DataConfig.dataset) if isinstance(data, Mapping) else None
    given = [parse_override(text)[0] for text in overrides]
    for key, value in (table.get(dataset) or {}).items():
        where, path = f"{FOR_DATASET}.{dataset}.{key}", paths[dataset][key]
        if path[0] == FOR_DATASET or path[:2] == ["data", "dataset"]:
            raise ConfigError(
                "cannot be set here: for_dataset is chosen by data.dataset",
                path=where,
                hint="set the dataset with data.dataset or --set data.dataset=NAME",
            )
        if any(g[: len(path)] == path or path[: len(g)] == g for g in given):
            continue
        _mark_set(lines, path, lines.get(where, SET_LINE))
        assign(raw, path, value, path=where)
    return raw


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


def load_config(
    name: str | None,
    overrides: Iterable[str] = (),
    *,
    parts: Parts,
    stdin_text: typing.Callable[[], str] = lambda: "",
    raw: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Read, override and validate a config; every error names file:line and dotted path.

    `name` is a YAML path, '-' (stdin) or a preset; with `raw` (a checkpoint's stored config)
    nothing is read and `name` only labels messages. A relative `data.dir` in a config file is
    relative to the file's folder (see resolve_data_dir). `parts` is what specs may name:
    bptrain.parts.PARTS.
    """
    if raw is None:
        source = read_source(name, stdin_text)
        label, run_name = source.label, source.run_name
        data, lines = parse_yaml(source.text, label)
        if isinstance(data, dict) and source.folder is not None:
            resolve_data_dir(data, source.folder)
    else:
        data, lines, label, run_name = _plain(raw), {}, name or "<checkpoint>", name or "resumed"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: a config must be a mapping with keys seed, data, model, optimizer, train"
        )
    data = apply_overrides(data, overrides, lines)
    loaded = LoadedConfig(Config(), label, lines, run_name)
    try:
        data = apply_dataset_settings(data, lines, parts, overrides)
        loaded.config = from_dict(data, parts=parts)
    except ConfigErrors as errors:  # before ConfigError, its base class
        raise ConfigErrors([loaded.locate(e) for e in errors.errors]) from None
    except ConfigError as error:  # a for_dataset entry that cannot apply
        raise loaded.locate(error) from None
    return loaded
