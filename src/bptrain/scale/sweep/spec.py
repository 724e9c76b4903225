"""Sweep specs: a base config, fixed overrides and a search space, checked whole before any
trial runs, every problem at once with its line (`sweep.yaml:7: space.optimizer.lr: ...`).

```yaml
base: mlp                                   # a preset, or a config file (beside the spec)
set: {train.epochs: 4}                      # applied to the base as --set would be
space:
  optimizer.lr: {log_uniform: [1.0e-3, 0.5]}
  model.layers[1].units: {int: [32, 256], step: 32}
  optimizer.type: {choice: [sgd, adam]}
trials: 12
metric: val_accuracy                        # direction follows: accuracy up, loss down
sampler: tpe                                # tpe, random, grid; or {type: tpe, startup_trials: 5}
pruner: median                              # median, none; or {type: median, startup_trials: 3}
seed: 0                                     # the sampler's, for reproducible suggestions
```

Here the spec is read and parsed; its dimensions are `space.Param`, and `spec_configs` builds
the configs it makes (`spec_configs.load_spec` is the whole check). Imports no Optuna: a spec
is checked (and `bptrain sweep` fails with exit 2) the same way whether or not the engine is
installed; only `Param.suggest` talks to an Optuna trial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import DEFAULT_PRESET, parse_yaml
from ...errors import ConfigError
from ...registry import suggestion
from .space import FORMS, PATH, Param, bad_path, parse_param

KEYS = ("base", "set", "space", "trials", "metric", "direction", "sampler", "pruner", "seed")
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
SUMMARY_METRICS = ("test_accuracy", "test_loss")
METRICS = EPOCH_METRICS + SUMMARY_METRICS
DIRECTIONS = {"maximize": "maximize", "maximise": "maximize", "max": "maximize",
              "minimize": "minimize", "minimise": "minimize", "min": "minimize"}  # fmt: skip
# Each sampler and pruner with the options a spec may give it (all counts, >= 0).
SAMPLERS: dict[str, tuple[str, ...]] = {"tpe": ("startup_trials",), "random": (), "grid": ()}
PRUNERS: dict[str, tuple[str, ...]] = {"median": ("startup_trials", "warmup_epochs"), "none": ()}
MAX_GRID = 100_000  # points a grid may have: beyond that it is not a grid anyone will finish


@dataclass(frozen=True)
class Spec:
    """A checked sweep spec (plain data, so worker processes receive it whole)."""

    name: str  # the spec file's stem: the default study name
    label: str  # the spec in messages
    base: str  # preset name or config path
    overrides: tuple[str, ...]  # `set:` as --set strings
    space: tuple[Param, ...]
    trials: int
    metric: str = "val_accuracy"
    direction: str = "maximize"
    sampler: str = "tpe"
    sampler_options: tuple[tuple[str, int], ...] = ()
    pruner: str = "median"
    pruner_options: tuple[tuple[str, int], ...] = ()
    seed: int | None = None

    def overrides_for(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The --set strings of a trial: `set:` first, then the trial's parameters."""
        return (*self.overrides, *(f"{path}={json.dumps(v)}" for path, v in params.items()))

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (checked griddable when the spec was loaded)."""
        return {p.path: p.grid() or [] for p in self.space}

    @property
    def planned(self) -> int:
        """Trials the study runs: `trials`, or the grid's size when that is smaller."""
        if self.sampler != "grid":
            return self.trials
        return min(self.trials, math.prod(len(values) for values in self.grid().values()))

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


class Where:
    """Error locations in a spec: `label:line: dotted.key`."""

    def __init__(self, label: str, lines: dict[str, int]) -> None:
        self.label, self.lines = label, lines

    def __call__(self, key: str) -> str:
        line = self.lines.get(key) or self.lines.get(key.split(".")[0])
        return f"{self.label}:{line}: {key}" if line else f"{self.label}: {key}"

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=self(key), hint=hint)


def read_spec(source: str, read_stdin: Callable[[], str]) -> tuple[str, str, str, Path]:
    """(text, label, name, folder) of a spec file or '-' (stdin)."""
    if source == "-":
        return read_stdin(), "<stdin>", "stdin", Path.cwd()
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"sweep spec {source} is not a file", hint="give a YAML file, or '-' for stdin"
        )
    try:
        return path.read_text(encoding="utf-8"), str(path), path.stem, path.parent
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read sweep spec {path}: {error}") from None


def parse_spec(
    source: str, read_stdin: Callable[[], str], trials: int | None = None
) -> tuple[Spec, dict[str, int], list[ConfigError]]:
    """The spec (its sound parts), the lines of its keys, and its problems."""
    text, label, name, folder = read_spec(source, read_stdin)
    raw, lines = parse_yaml(text, label)
    where = Where(label, lines)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: a sweep spec is a mapping with keys {', '.join(KEYS)}")
    errors = [
        where.error(str(key), f"unknown key (accepted: {', '.join(KEYS)})", suggestion(key, KEYS))
        for key in raw
        if key not in KEYS
    ]
    parts: dict[str, Any] = {"name": name, "label": label}
    parts["base"] = _base(raw.get("base", DEFAULT_PRESET), folder, where, errors)
    parts["overrides"] = _set(raw.get("set"), where, errors)
    parts["space"] = _space(raw.get("space"), raw.get("set") or {}, where, errors)
    parts["trials"] = trials if trials is not None else _trials(raw, where, errors)
    parts.update(_objective(raw, where, errors))
    parts["sampler"], parts["sampler_options"] = _engine(raw, "sampler", SAMPLERS, where, errors)
    parts["pruner"], parts["pruner_options"] = _engine(raw, "pruner", PRUNERS, where, errors)
    parts["seed"] = _seed(raw.get("seed"), where, errors)
    if parts["sampler"] == "grid":
        errors += _grid_errors(parts["space"], where)
    return Spec(**parts), lines, errors


def _base(value: Any, folder: Path, where: Where, errors: list[ConfigError]) -> str:
    if not isinstance(value, str) or not value or value == "-":
        errors.append(
            where.error("base", f"expected a preset name or a config file, got {value!r}")
        )
        return DEFAULT_PRESET
    beside = folder / value
    return str(beside) if beside.is_file() else value  # else a preset, or a path from here


def _set(value: Any, where: Where, errors: list[ConfigError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        errors.append(where.error("set", "expected a mapping of dotted paths to values"))
        return ()
    overrides = []
    for key, item in value.items():
        if not isinstance(key, str) or not PATH.match(key):
            errors.append(where.error(f"set.{key}", bad_path()))
            continue
        try:
            overrides.append(f"{key}={json.dumps(item, allow_nan=False)}")
        except (TypeError, ValueError):
            errors.append(where.error(f"set.{key}", f"unsupported value {item!r}"))
    return tuple(overrides)


def _space(value: Any, fixed: Any, where: Where, errors: list[ConfigError]) -> tuple[Param, ...]:
    if not isinstance(value, dict) or not value:
        errors.append(
            where.error("space", f"expected a mapping of dotted paths to {FORMS}, got {value!r}")
        )
        return ()
    params = []
    for path, form in value.items():
        key = f"space.{path}"
        if not isinstance(path, str) or not PATH.match(path):
            errors.append(where.error(key, bad_path()))
        elif isinstance(fixed, dict) and path in fixed:
            errors.append(where.error(key, "is also fixed in set:", "keep one of them"))
        else:
            param, problems = parse_param(path, form)
            errors += [where.error(key, problem) for problem in problems]
            params += [param] if param is not None else []
    return tuple(params)


def _trials(raw: dict[str, Any], where: Where, errors: list[ConfigError]) -> int:
    value = raw.get("trials")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = "missing" if "trials" not in raw else f"expected an integer >= 1, got {value!r}"
        errors.append(
            where.error("trials", shown, "how many trials the study runs, e.g. trials: 20")
        )
        return 1
    return value


def _objective(raw: dict[str, Any], where: Where, errors: list[ConfigError]) -> dict[str, str]:
    metric = raw.get("metric", "val_accuracy")
    if metric not in METRICS:
        errors.append(
            where.error(
                "metric",
                f"unknown metric {metric!r} (accepted: {', '.join(METRICS)})",
                suggestion(metric, METRICS),
            )
        )
        metric = "val_accuracy"
    default = "minimize" if str(metric).endswith("loss") else "maximize"
    direction = raw.get("direction", default)
    if direction not in DIRECTIONS:
        errors.append(where.error("direction", f"expected maximize or minimize, got {direction!r}"))
        direction = default
    return {"metric": metric, "direction": DIRECTIONS[direction]}


def _engine(
    raw: dict[str, Any], key: str, table: dict[str, tuple[str, ...]], where: Where,
    errors: list[ConfigError],
) -> tuple[str, tuple[tuple[str, int], ...]]:  # fmt: skip
    """A sampler or pruner: a name, or {type: name, option: count, ...}."""
    default = next(iter(table))
    value = raw.get(key, default)
    options = dict(value) if isinstance(value, dict) else {}
    name = options.pop("type", None) if isinstance(value, dict) else value
    if name not in table:
        errors.append(
            where.error(
                key,
                f"unknown {key} {name!r} (accepted: {', '.join(table)})",
                suggestion(name, table) if isinstance(name, str) else None,
            )
        )
        return default, ()
    for option, count in options.items():
        if option not in table[name]:
            accepted = ", ".join(table[name]) or "none"
            hint = suggestion(option, table[name])
            errors.append(
                where.error(f"{key}.{option}", f"unknown option (accepted: {accepted})", hint)
            )
        elif not isinstance(count, int) or isinstance(count, bool) or count < 0:
            errors.append(where.error(f"{key}.{option}", f"expected a count >= 0, got {count!r}"))
    return name, tuple(sorted(options.items()))


def _seed(value: Any, where: Where, errors: list[ConfigError]) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    errors.append(where.error("seed", f"expected a non-negative integer or null, got {value!r}"))
    return None


def _grid_errors(space: tuple[Param, ...], where: Where) -> list[ConfigError]:
    errors = [
        where.error(
            f"space.{p.path}",
            f"the grid sampler needs a finite set of values, and {p.kind} is continuous here",
            "use choice: [...], or an int or uniform range with a step (not log)",
        )
        for p in space
        if p.grid() is None
    ]
    size = math.prod(len(p.grid() or [1]) for p in space)
    if not errors and size > MAX_GRID:
        errors.append(where.error("space", f"the grid has {size:,} points (at most {MAX_GRID:,})"))
    return errors
