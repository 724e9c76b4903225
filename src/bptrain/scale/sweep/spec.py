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

Imports no Optuna: a spec is checked (and `bptrain sweep` fails with exit 2) the same way
whether or not the engine is installed; only `Param.suggest` talks to an Optuna trial.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import DEFAULT_PRESET, LoadedConfig, parse_yaml
from ...errors import ConfigError, ConfigErrors
from ...registry import suggestion
from ...run import inputs
from ...run.inputs import DataOptions

KEYS = ("base", "set", "space", "trials", "metric", "direction", "sampler", "pruner", "seed")
KINDS = ("log_uniform", "uniform", "int", "choice")
EPOCH_METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
SUMMARY_METRICS = ("test_accuracy", "test_loss")
METRICS = EPOCH_METRICS + SUMMARY_METRICS
DIRECTIONS = {"maximize": "maximize", "maximise": "maximize", "max": "maximize",
              "minimize": "minimize", "minimise": "minimize", "min": "minimize"}  # fmt: skip
# Each sampler and pruner with the options a spec may give it (all counts, >= 0).
SAMPLERS: dict[str, tuple[str, ...]] = {"tpe": ("startup_trials",), "random": (), "grid": ()}
PRUNERS: dict[str, tuple[str, ...]] = {"median": ("startup_trials", "warmup_epochs"), "none": ()}
MAX_GRID = 100_000  # points a grid may have: beyond that it is not a grid anyone will finish
_PATH = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")
_FORMS = "{log_uniform: [low, high]}, {uniform: [low, high]}, {int: [low, high]} or {choice: [...]}"


@dataclass(frozen=True)
class Param:
    """One dimension of the search space, named by its dotted config path."""

    path: str
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def probes(self) -> tuple[Any, ...]:
        """The values checked before any trial runs: the range's ends, or every choice."""
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def grid(self) -> list[Any] | None:
        """Every value a grid search visits, or None when the range is continuous."""
        if self.kind == "choice":
            return list(self.choices)
        if self.log or (self.kind != "int" and self.step is None):
            return None
        step = self.step or 1
        count = round((self.high - self.low) / step) + 1  # type: ignore[operator]
        values = [self.low + i * step for i in range(count)]  # type: ignore[operator]
        return values if self.kind == "int" else [round(v, 12) for v in values]

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.path, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(
            self.path, self.low, self.high, step=self.step, log=self.kind == "log_uniform"
        )


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


class _Where:
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


def load_spec(
    source: str, read_stdin: Callable[[], str], *, data: DataOptions, trials: int | None = None
) -> tuple[Spec, LoadedConfig]:
    """A checked spec and its base config (with `set:`); raises ConfigErrors with every problem
    of the spec and of the configs it makes. `trials` (--trials) replaces the spec's."""
    spec, lines, errors = parse_spec(source, read_stdin, trials)
    base, more = check_configs(spec, lines, data)
    if errors or more:
        raise ConfigErrors(sorted([*errors, *more], key=_line_of))
    assert base is not None
    return spec, base


def _line_of(error: ConfigError) -> int:
    found = re.match(r"[^:]*:(\d+): ", str(error))
    return int(found.group(1)) if found else 0


def parse_spec(
    source: str, read_stdin: Callable[[], str], trials: int | None = None
) -> tuple[Spec, dict[str, int], list[ConfigError]]:
    """The spec (its sound parts), the lines of its keys, and its problems."""
    text, label, name, folder = read_spec(source, read_stdin)
    raw, lines = parse_yaml(text, label)
    where = _Where(label, lines)
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


def _base(value: Any, folder: Path, where: _Where, errors: list[ConfigError]) -> str:
    if not isinstance(value, str) or not value or value == "-":
        errors.append(
            where.error("base", f"expected a preset name or a config file, got {value!r}")
        )
        return DEFAULT_PRESET
    beside = folder / value
    return str(beside) if beside.is_file() else value  # else a preset, or a path from here


def _set(value: Any, where: _Where, errors: list[ConfigError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        errors.append(where.error("set", "expected a mapping of dotted paths to values"))
        return ()
    overrides = []
    for key, item in value.items():
        if not isinstance(key, str) or not _PATH.match(key):
            errors.append(where.error(f"set.{key}", _bad_path()))
            continue
        try:
            overrides.append(f"{key}={json.dumps(item, allow_nan=False)}")
        except (TypeError, ValueError):
            errors.append(where.error(f"set.{key}", f"unsupported value {item!r}"))
    return tuple(overrides)


def _bad_path() -> str:
    return "not a dotted config path such as train.epochs or model.layers[1].units"


def _space(value: Any, fixed: Any, where: _Where, errors: list[ConfigError]) -> tuple[Param, ...]:
    if not isinstance(value, dict) or not value:
        errors.append(
            where.error("space", f"expected a mapping of dotted paths to {_FORMS}, got {value!r}")
        )
        return ()
    params = []
    for path, form in value.items():
        key = f"space.{path}"
        if not isinstance(path, str) or not _PATH.match(path):
            errors.append(where.error(key, _bad_path()))
        elif isinstance(fixed, dict) and path in fixed:
            errors.append(where.error(key, "is also fixed in set:", "keep one of them"))
        else:
            param, problems = _param(path, form)
            errors += [where.error(key, problem) for problem in problems]
            params += [param] if param is not None else []
    return tuple(params)


def _param(path: str, form: Any) -> tuple[Param | None, list[str]]:
    """One dimension from its spec form, or the problems with it."""
    if not isinstance(form, dict):
        return None, [f"expected {_FORMS}, got {form!r}"]
    kinds = [key for key in form if key in KINDS]
    unknown = [key for key in form if key not in (*KINDS, "step", "log")]
    problems = [
        f"unknown key {key!r} (accepted: {', '.join(KINDS)}, step, log)"
        + (f" ({hint})" if (hint := suggestion(key, (*KINDS, "step", "log"))) else "")
        for key in unknown
    ]
    if problems:
        return None, problems
    if len(kinds) != 1:
        return None, [f"give exactly one of {', '.join(KINDS)}, got {kinds or 'none'}"]
    kind = kinds[0]
    if kind == "choice":
        return _choice(path, form)
    return _range(path, kind, form)


def _choice(path: str, form: dict[str, Any]) -> tuple[Param | None, list[str]]:
    values = form["choice"]
    if "step" in form or "log" in form:
        return None, ["step and log belong to ranges, not to choice"]
    if not isinstance(values, list) or not values:
        return None, [f"choice needs a non-empty list of values, got {values!r}"]
    odd = [v for v in values if v is not None and not isinstance(v, (bool, int, float, str))]
    if odd:
        return None, [
            f"choice values must be numbers, strings, booleans or null, got {odd[0]!r} "
            "(choose among whole layers by sweeping their fields, e.g. units)"
        ]
    if len(set(map(json.dumps, values))) < len(values):
        return None, [f"choice lists a value twice: {values!r}"]
    return Param(path, "choice", choices=tuple(values)), []


def _is_number(value: Any, kind: str) -> bool:
    allowed = (int,) if kind == "int" else (int, float)
    return isinstance(value, allowed) and not isinstance(value, bool) and math.isfinite(value)


def _range(path: str, kind: str, form: dict[str, Any]) -> tuple[Param | None, list[str]]:
    bounds, step, log = form[kind], form.get("step"), form.get("log", False)
    what = "integers" if kind == "int" else "numbers"
    if not (
        isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b, kind) for b in bounds)
    ):
        return None, [f"{kind} needs [low, high], two {what}, got {bounds!r}"]
    low, high = bounds
    problems = []
    if low >= high:
        problems.append(
            f"empty range {bounds}: low must be below high (a fixed value goes in set:)"
        )
    if kind == "log_uniform" and low <= 0:
        problems.append(f"a log range needs low > 0, got {bounds}")
    if not isinstance(log, bool) or (log and kind != "int"):
        problems.append("log: true is for int ranges (a float range on a log scale is log_uniform)")
    if log and low < 1:
        problems.append(f"a log int range needs low >= 1, got {bounds}")
    if step is not None:
        problems += _step_problems(kind, low, high, step, log)
    if problems:
        return None, problems
    return Param(path, kind, low=low, high=high, step=step, log=log), []


def _step_problems(kind: str, low: float, high: float, step: Any, log: bool) -> list[str]:
    if kind == "log_uniform" or log:
        return ["step cannot be combined with a log scale"]
    if not _is_number(step, kind) or step <= 0:
        return [f"step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}"]
    count = (high - low) / step
    if abs(count - round(count)) > 1e-9:
        return [f"high - low ({high - low:g}) must be a multiple of step ({step:g})"]
    return []


def _trials(raw: dict[str, Any], where: _Where, errors: list[ConfigError]) -> int:
    value = raw.get("trials")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = "missing" if "trials" not in raw else f"expected an integer >= 1, got {value!r}"
        errors.append(
            where.error("trials", shown, "how many trials the study runs, e.g. trials: 20")
        )
        return 1
    return value


def _objective(raw: dict[str, Any], where: _Where, errors: list[ConfigError]) -> dict[str, str]:
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
    raw: dict[str, Any], key: str, table: dict[str, tuple[str, ...]], where: _Where,
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


def _seed(value: Any, where: _Where, errors: list[ConfigError]) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    errors.append(where.error("seed", f"expected a non-negative integer or null, got {value!r}"))
    return None


def _grid_errors(space: tuple[Param, ...], where: _Where) -> list[ConfigError]:
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


# ---------------------------------------------------------------------------------------------
# The configs a spec makes: the base with `set:`, and each dimension's ends and choices


def check_configs(
    spec: Spec, lines: dict[str, int], data: DataOptions
) -> tuple[LoadedConfig | None, list[ConfigError]]:
    """The base config with `set:` applied, and the problems of the configs the spec makes:
    the base's, then each dimension's (a path that names nothing; an end or a choice that makes
    a config which does not validate or whose network cannot be built)."""
    where = _Where(spec.label, lines)
    shapes: dict[tuple[str, str | None], tuple[tuple[int, ...], int]] = {}

    def build(overrides: tuple[str, ...]) -> LoadedConfig:
        loaded = inputs.config_of(spec.base, overrides)
        _check_stack(loaded, data, shapes)
        return loaded

    errors: list[ConfigError] = []
    fixed = spec.overrides
    try:
        base: LoadedConfig | None = build(fixed)
    except ConfigError as error:
        errors = [_from_set(e, spec, where) for e in _each(error)]
        if not fixed:
            return None, errors
        try:  # the space can still be checked against the base alone
            base, fixed = build(()), ()
        except ConfigError:
            return None, errors
    assert base is not None
    raw = base.config.to_dict()
    sound = []
    for param in spec.space:
        problem = missing_path(raw, param.path)
        if problem is not None:
            errors.append(where.error(f"space.{param.path}", problem))
        else:
            sound.append(param)
    errors += _metric_errors(spec, base, where)
    errors += _probe_errors(fixed, sound, build, where)
    return (base if fixed == spec.overrides else None), errors


def _each(error: ConfigError) -> list[ConfigError]:
    return list(error.errors) if isinstance(error, ConfigErrors) else [error]


def _inner(error: ConfigError) -> str:
    """An error's text without the --set prefix the override machinery gives it."""
    return re.sub(r"^--set '?([^=': ]+)(=[^']*')?:? ?", r"\1: ", str(error))


def _from_set(error: ConfigError, spec: Spec, where: _Where) -> ConfigError:
    """A base-config error; those --set caused point at the spec's `set:` line."""
    text = str(error)
    if not text.startswith("--set"):
        return error
    key = text[len("--set ") :].lstrip("'").split("=")[0].split(":")[0].strip()
    keys = [o.split("=")[0] for o in spec.overrides]
    owner = max((k for k in keys if key.startswith(k)), key=len, default=None)
    text = _inner(error)
    if owner and text.startswith(f"{owner}: "):
        text = text[len(owner) + 2 :]
    return ConfigError(text, path=where(f"set.{owner}") if owner else where("set"))


def missing_path(raw: Any, path: str) -> str | None:
    """Why `path` names nothing in the config `raw`, or None. A missing last key is left to the
    config's own checks (they know which arguments a part takes, with did-you-mean)."""
    parts = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    ]
    node, shown = raw, ""
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(part, int):
            size = len(node) if isinstance(node, list) else 0
            if not isinstance(node, list) or part >= size:
                return f"{shown}[{part}] is not in the base config ({shown} has {size} items)"
            shown += f"[{part}]"
        else:
            if not isinstance(node, dict):
                return f"{shown} is {json.dumps(node)} in the base config, not a mapping"
            shown = f"{shown}.{part}" if shown else part
            if part not in node:
                if last:
                    return None
                hint = suggestion(part, [str(k) for k in node])
                return f"{shown} is not in the base config" + (f" ({hint})" if hint else "")
        node = node[part]
    return None


def _metric_errors(spec: Spec, base: LoadedConfig, where: _Where) -> list[ConfigError]:
    swept = {p.path for p in spec.space}
    if not spec.metric.startswith("val_") or "data.validation" in swept:
        return []
    if base.config.data.validation > 0:
        return []
    return [
        where.error(
            "metric",
            f"{spec.metric} needs a validation set (data.validation is 0)",
            "hold out samples (set: {data.validation: 5000}) or use a test_ metric",
        )
    ]


def _check_stack(
    loaded: LoadedConfig, data: DataOptions, shapes: dict[tuple[str, str | None], Any]
) -> None:
    """inputs.check_stack, reading an `idx` folder's shape once for all the probes."""
    from ...data import DATASETS
    from ...engine.network import Network

    cfg = loaded.config
    key = (cfg.data.dataset, data.data_dir or cfg.data.dir)
    if DATASETS[cfg.data.dataset].image_shape is None and key[1] is None:
        return  # the folder is only known at run time
    if key not in shapes:
        shapes[key] = inputs.data_shape(cfg, data)
    input_shape, classes = shapes[key]
    try:
        Network.from_specs(cfg.model.layers, input_shape, cfg.model.loss, num_classes=classes)
    except ConfigError as error:
        raise loaded.locate(error) from None


def _probe_errors(
    fixed: tuple[str, ...],
    params: list[Param],
    build: Callable[[tuple[str, ...]], LoadedConfig],
    where: _Where,
) -> list[ConfigError]:
    """Each dimension's ends and choices, one at a time on the base (so a failure is that
    value's own; combinations that fail are left to their trial, which then fails)."""
    errors, seen = [], set()
    for param in params:
        for value in param.probes():
            try:
                build((*fixed, f"{param.path}={json.dumps(value)}"))
            except ConfigError as error:
                for each in _each(error):
                    inner = _inner(each)
                    if (param.path, inner) not in seen:  # the same for every value: once
                        seen.add((param.path, inner))
                        text = f"{json.dumps(value)} makes a config that fails: {inner}"
                        errors.append(where.error(f"space.{param.path}", text))
    return errors
