"""Ctrl-C, SIGTERM and SIGHUP: stop at once, or, while a run can stop cleanly, at the next step.

`timeout`, `docker stop`, Slurm preemption and systemd send SIGTERM; a closed terminal sends
SIGHUP. All three are treated like the first Ctrl-C: outside a training loop they raise
Interrupted at once (exit 128 + signal); inside `deferred()` the first one only asks the loop to
stop after its current step (so a checkpoint of that step can be written), and a second one
raises at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """The process's handler for SIGNALS; `received` is the first signal seen while deferring."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._deferring = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring and self.received is None:
            self.received = signum  # polled by the training loop between steps
            return
        raise Interrupted(signum=signum)

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle SIGNALS for the duration; the previous handlers come back afterwards."""
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside: the first signal sets `received` instead of raising."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False


# One per process: signal handlers are process-wide.
INTERRUPTS = Interrupts()
