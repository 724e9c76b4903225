"""What a sweep shows: trial records on stdout, a line per trial and a bar on stderr, best.yaml
kept up to date, and the `sweep` record that sums up the study."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from .best_file import BestFile, short
from .storage import best_of, done_count
from .worker import Job

log = logging.getLogger("bptrain.sweep")


class Reporter:
    """The coordinator's voice: it alone writes to stdout, stderr and best.yaml."""

    def __init__(
        self, job: Job, best: BestFile, emit: Callable[[dict[str, Any]], None], bar: Any = None
    ) -> None:
        self.job, self.spec, self.best, self.emit = job, job.spec, best, emit
        self.bar = bar
        self.emitting = True  # False once stdout is gone: the sweep stops as quietly as train

    def start(self, known: int, workers: int) -> None:
        job = self.job
        threads = f"{job.threads} BLAS thread{'s' if job.threads > 1 else ''}"
        log.info(
            f"sweep study '{job.study}' ({job.storage.shown}): {self.spec.planned} trials "
            f"planned, {known} in the study so far; {workers} worker(s) here with {threads} "
            f"each; checkpoints and best.yaml in {job.out}"
        )

    def log(self, level: int, text: str) -> None:
        """A line on stderr, drawn above the bar."""
        if self.bar is not None:
            self.bar.clear()
        log.log(level, text)
        if self.bar is not None:
            self.bar.refresh()

    def trial(self, study: Any, record: dict[str, Any], note: str | None) -> None:
        """A trial ended: its record, best.yaml if it is the best, the bar, its line."""
        if self.emitting:
            self.emit(record)
        best = self.best.refresh(study) if record["state"] == "COMPLETE" else None
        best = best or best_of(study)
        done = done_count(study.get_trials(deepcopy=False))
        if self.bar is not None:  # drawn again by log, below the trial's line
            self.bar.n = done
            shown = f"best {best.value:.4g} (trial {best.number})" if best is not None else ""
            self.bar.set_postfix_str(shown, refresh=False)
        level = logging.WARNING if record["state"] == "FAIL" else logging.INFO
        if self.emitting:
            self.log(level, self._trial_line(record, note, done, best))

    def _trial_line(self, record: dict[str, Any], note: str | None, done: int, best: Any) -> str:
        metric, value, state = self.spec.metric, record["value"], record["state"]
        params = ", ".join(f"{k}={short(v)}" for k, v in record["params"].items())
        if state == "COMPLETE":
            what = f"complete: {metric} {value:.4g} in {record['epochs']} epochs"
        elif state == "PRUNED":
            what = f"pruned {note or ''}".strip()
        else:
            what = f"failed: {note or 'its process ended'}"
        shown = f", best {best.value:.4g} (trial {best.number})" if best is not None else ""
        params = f" ({params})" if params else ""
        return (
            f"trial {record['number']} {what}, {record['seconds']:.1f} s{params}; "
            f"{done}/{self.spec.planned} done{shown}"
        )

    def finish(self, study: Any) -> dict[str, Any]:
        """The `sweep` record (emitted), after best.yaml is brought up to date."""
        best = self.best.refresh(study)
        states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        record = {
            "event": "sweep",
            "study": self.job.study,
            "storage": self.job.storage.shown,
            "best_trial": best.number if best is not None else None,
            "best_params": dict(best.params) if best is not None else None,
            "best_value": best.value if best is not None else None,
            "n_complete": states["COMPLETE"],
            "n_pruned": states["PRUNED"],
            "n_failed": states["FAIL"],
        }
        self.emit(record)
        self._end(record)
        return record

    def _end(self, record: dict[str, Any]) -> None:
        if record["best_trial"] is None:
            log.warning(f"study '{self.job.study}' has no complete trial yet: no best.yaml")
            return
        log.info(
            f"best: trial {record['best_trial']}, {self.spec.metric} "
            f"{record['best_value']:.4g}; {record['n_complete']} complete, "
            f"{record['n_pruned']} pruned, {record['n_failed']} failed; retrain it with: "
            f"{self.best.command}"
        )
