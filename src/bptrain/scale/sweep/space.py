"""A sweep's search space: each dimension (`Param`) and the spec forms it is written in,
`{log_uniform: [low, high]}`, `{uniform: ...}`, `{int: ..., step, log}` or `{choice: [...]}`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ...registry import suggestion

KINDS = ("log_uniform", "uniform", "int", "choice")
PATH = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*$")
FORMS = "{log_uniform: [low, high]}, {uniform: [low, high]}, {int: [low, high]} or {choice: [...]}"


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


def bad_path() -> str:
    return "not a dotted config path such as train.epochs or model.layers[1].units"


def parse_param(path: str, form: Any) -> tuple[Param | None, list[str]]:
    """One dimension from its spec form, or the problems with it."""
    if not isinstance(form, dict):
        return None, [f"expected {FORMS}, got {form!r}"]
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
