"""The typed config: frozen dataclasses, and the checks that turn raw YAML data into one.

What a config may name (layers, losses, optimizers, schedules, datasets) comes in as `parts`
(bptrain.parts.PARTS); nothing here imports a registry of parts.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigError, ConfigErrors
from ..registry import Parts, Registry, describe, suggestion, type_matches, unknown_name_error


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
        return plain_data(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def plain_data(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}

# Value rules beyond types: (section, key) -> (check, message).
_RULES: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    # 0 epochs only brings --init-from's weights in as they are (run/session.py checks that).
    ("train", "epochs"): (lambda v: v >= 0, "must be >= 0"),
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
        errors += _check_augment(augment, parts)
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    if isinstance(dataset, str) and dataset not in parts.datasets:
        errors.append(
            unknown_name_error(
                "dataset", dataset, parts.datasets, "data.dataset", parts.dataset_aliases
            )
        )
    return errors


def _check_augment(augment: list, parts: Parts) -> list[ConfigError]:
    """The augmentation specs, and the dataset names their not_on/only_on lists give."""
    errors: list[ConfigError] = []
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
    if warmup and warmup >= epochs:
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
    return plain_data(registry.normalize(spec))
