"""`bptrain sweep` from start to end: check the spec and every destination, fetch the data,
open the study (study.py), then hand it to the coordinator (coordinator.py)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import extras, files
from ...run import tensorboard
from ...run.inputs import DataOptions
from ...run.tensorboard import BoardOptions
from .best_file import BestFile
from .coordinator import Coordinator
from .reporting import Reporter
from .spec_configs import load_spec
from .storage import storage_of
from .study import open_study, recover_stale, remove_stale_locks
from .worker import Job

log = logging.getLogger("bptrain.sweep")


@dataclass(frozen=True)
class SweepRequest:
    """What `bptrain sweep` was asked to do."""

    spec: str
    out: str | None = None
    storage: str | None = None
    study: str | None = None
    workers: int = 1
    trials: int | None = None
    threads: int | None = None  # BLAS threads per worker (None: 1)
    data: DataOptions = field(default_factory=DataOptions)
    verbose: bool = False
    tensorboard: BoardOptions | None = None  # each trial's events in DIR/trial-NNNN/


def default_out(study: str) -> Path:
    """runs/sweep-<study>/ (runs/<study>/ when the name already starts with sweep-)."""
    name = re.sub(r"[^\w.-]+", "-", study).strip("-.") or "study"
    return Path("runs") / (name if name.startswith("sweep-") else f"sweep-{name}")


def sweep(
    request: SweepRequest,
    *,
    emit: Callable[[dict[str, Any]], None],
    read_stdin: Callable[[], str] = lambda: "",
    progress: Callable[[int, int], Any] = lambda total, done: None,
) -> dict[str, Any]:
    """Run (or continue, or join) a sweep; returns the `sweep` record (also emitted)."""
    optuna = extras.require("optuna", "sweep", "bptrain sweep")
    spec, base = load_spec(request.spec, read_stdin, data=request.data, trials=request.trials)
    name = request.study or spec.name
    out = Path(request.out) if request.out else default_out(name)
    storage = storage_of(request.storage, out)
    _prefetch(base, request.data)  # a data error (exit 3) before any trial, and one download
    files.check_folder(out, label="--out")  # made, and writable (exit 4)
    if request.tensorboard is not None:
        tensorboard.check(request.tensorboard, "sweep --tensorboard")
    job = Job(spec, name, storage, str(out), request.data, request.threads or 1,
              request.verbose, parent=os.getpid(), tensorboard=request.tensorboard)  # fmt: skip
    best = BestFile(out / "best.yaml", job)
    best.check()
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(optuna, spec, name, storage, out)
        recover_stale(study, storage)
        remove_stale_locks(out, study)
        reporter = Reporter(job, best, emit)
        record = Coordinator(study, job, request.workers, reporter, progress).run()
        remove_stale_locks(out, study)  # those of this run's workers killed with -9
        return record
    finally:
        optuna.logging.set_verbosity(previous)


def _prefetch(base: Any, data: DataOptions) -> None:
    from ... import data as data_layer

    cfg = base.config
    data_layer.fetch(
        cfg.data.dataset,
        data.data_dir if data.data_dir is not None else cfg.data.dir,
        mirrors=[*data.mirrors, *cfg.data.mirrors],
        offline=data.offline,
        quiet=not log.isEnabledFor(logging.INFO),
    )
