"""`bptrain check`: every check on every class a file defines (or the ones named)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..custom.book import BookClass
from ..custom.names import Reference, reference_for, reference_named
from ..custom.source import ClassRef, class_from, classes_in, definitions, import_file
from ..errors import ConfigError
from . import checks, checks_kinds
from .result import Result, failed
from .subject import Subject
from .usercode import UserCodeFailed

# In the order a learner meets the ideas: values, gradients, shapes, side effects, dtypes,
# extremes, then what only some kinds of class must do.
CHECKS: tuple[Callable[[Subject], Result | None], ...] = (
    checks.forward,
    checks.backward,
    checks.shapes,
    checks.leaves_dout,
    checks.leaves_x,
    checks.second_forward,
    checks.float32,
    checks_kinds.large_inputs,
    checks_kinds.tensor_input,
    checks_kinds.label_forms,
    checks_kinds.batch_mean,
    checks_kinds.inference,
)


@dataclass
class ClassReport:
    """Every check's result for one class."""

    file: Path
    cls: str
    reference: Reference | None
    results: list[Result]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_record(self) -> dict[str, Any]:
        return {
            "event": "check",
            "file": str(self.file),
            "class": self.cls,
            "as": None if self.reference is None else self.reference.name,
            "ok": self.ok,
            "checks": [r.to_record() for r in self.results],
        }


def check_class(cls: type, file: Path, as_name: str | None = None) -> ClassReport:
    """Run every check that applies to `cls`, held against `as_name` or its name's reference."""
    reference = reference_named(as_name) if as_name else reference_for(cls.__name__)
    subject = Subject(BookClass.of(cls), reference, file)
    results = []
    for check in CHECKS:
        try:
            result = check(subject)
        except UserCodeFailed as error:
            result = failed(check.__name__, str(error))
        if result is not None:
            results.append(result)
    return ClassReport(file, cls.__name__, reference, results)


def targets(ref: ClassRef) -> tuple[list[type], list[str]]:
    """The classes `FILE.py[:CLASS]` names (all of a file's layer-like ones), and notes for
    the person: classes skipped, classes defined twice."""
    if ref.cls:
        return [class_from(ref)], []
    module = import_file(ref.path)
    notes = [
        f"{ref.path}: {name} is defined {len(lines)} times (lines {', '.join(map(str, lines))}); "
        f"Python keeps the last one, which is the one checked"
        for name, lines in definitions(ref.path).items()
        if len(lines) > 1
    ]
    found = []
    for cls in classes_in(module):
        if callable(getattr(cls, "forward", None)) and callable(getattr(cls, "backward", None)):
            found.append(cls)
        else:
            notes.append(f"{ref.path}: {cls.__name__} skipped (no forward and backward)")
    if not found:
        raise ConfigError(
            f"{ref.path} defines no class with forward() and backward()",
            hint="a layer is a class with forward(x) and backward(dout), as the book writes them",
        )
    return found, notes


def check_files(
    refs: list[str], as_name: str | None, emit: Callable[[dict[str, Any]], None]
) -> list[ClassReport]:
    """Check every class the arguments name; each report is emitted as soon as it is done."""
    parsed = [ClassRef.parse(text) for text in refs]
    chosen = [(ref, targets(ref)) for ref in parsed]  # every file imports before any check
    if as_name is not None and sum(len(classes) for _, (classes, _) in chosen) != 1:
        raise ConfigError("--as matches one class by hand: name it, as FILE.py:CLASS")
    reports = []
    for ref, (classes, notes) in chosen:
        for cls in classes:
            report = check_class(cls, ref.path, as_name)
            report.notes = [n for n in notes if f" {cls.__name__} " in n]
            emit(report.to_record())
            reports.append(report)
    return reports
