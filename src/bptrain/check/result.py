"""What one check found, and the checks' shared plumbing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..custom.names import Reference
from .cases import DTYPES, SEEDS, Case, make_case
from .subject import Subject


@dataclass
class Result:
    """One check's verdict: `detail` says what failed in a learner's words (or what held)."""

    name: str
    ok: bool
    detail: str
    max_error: float | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "max_error": self.max_error,
        }


def passed(name: str, detail: str, max_error: float | None = None) -> Result:
    return Result(name, True, detail, max_error)


def failed(name: str, detail: str, max_error: float | None = None) -> Result:
    return Result(name, False, detail, max_error)


def cases(subject: Subject, dtypes: tuple[np.dtype, ...] = DTYPES, batch: int = 0) -> list[Case]:
    """Every seeded case in `dtypes` (a loss's comparisons use one sample: see checks.py)."""
    return [make_case(subject.book, subject.reference, s, d, batch) for d in dtypes for s in SEEDS]


def comparable(reference: Reference | None) -> bool:
    """Whether the reference's outputs are answers (dropout's masks are random)."""
    return reference is not None and reference.name != "dropout"
