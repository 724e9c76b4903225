"""The configs a sweep spec makes, built and checked before any trial runs: the base with
`set:`, and each dimension's ends and choices applied to it one at a time. `load_spec` is the
whole check: the spec's own problems (spec.py) and those of its configs, sorted by line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ...config import LoadedConfig
from ...errors import ConfigError, ConfigErrors
from ...registry import suggestion
from ...run import inputs
from ...run.inputs import DataOptions
from .space import Param
from .spec import Spec, Where, parse_spec


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


def check_configs(
    spec: Spec, lines: dict[str, int], data: DataOptions
) -> tuple[LoadedConfig | None, list[ConfigError]]:
    """The base config with `set:` applied, and the problems of the configs the spec makes:
    the base's, then each dimension's (a path that names nothing; an end or a choice that makes
    a config which does not validate or whose network cannot be built)."""
    where = Where(spec.label, lines)
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


def _from_set(error: ConfigError, spec: Spec, where: Where) -> ConfigError:
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


def _metric_errors(spec: Spec, base: LoadedConfig, where: Where) -> list[ConfigError]:
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
    where: Where,
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
