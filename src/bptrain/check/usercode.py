"""The user's code raised: what, and where in their file, in words a learner can follow."""

from __future__ import annotations

import traceback
from pathlib import Path


class UserCodeFailed(Exception):
    """The user's code raised: what it raised, and where in their file."""


def described(error: Exception, file: Path) -> str:
    """`ValueError: message (seed_layers.py line 147)`: the last line of the user's file the
    traceback passed through, so a learner finds it."""
    target = file.resolve()
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename and Path(frame.filename).resolve() == target
    ]
    where = f" ({file.name} line {lines[-1]})" if lines else ""
    return f"{type(error).__name__}: {str(error).strip()}{where}"
