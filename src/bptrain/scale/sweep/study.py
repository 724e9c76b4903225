"""Opening a sweep's study before any worker starts: nothing is written to the storage until
the journal has been read whole (see journal.py) and the checkpoints in --out are known to be
this study's; then trials left RUNNING by processes that are gone are recorded FAIL."""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError
from ...files import pid_alive
from ...run import outfile
from .spec import Spec
from .storage import Storage
from .worker import HOST

log = logging.getLogger("bptrain.sweep")


def open_study(optuna: Any, spec: Spec, name: str, storage: Storage, out: Path) -> Any:
    """Load the study (a rerun, another machine) or create it; it must want what the spec
    does, and the checkpoints in `out` must be its own (checked before anything is written)."""
    records = None
    if not storage.is_url:
        from . import journal

        records = journal.check(storage.where)
    opened = storage.open()
    engines = {
        "sampler": optuna.samplers.RandomSampler(seed=0),
        "pruner": optuna.pruners.NopPruner(),
    }
    try:
        study = optuna.load_study(study_name=name, storage=opened, **engines)
    except KeyError:  # no such study yet
        study = None
    check_checkpoints(out, study, name, storage, records)
    if study is None:
        study = optuna.create_study(
            study_name=name,
            storage=opened,
            direction=spec.direction,
            load_if_exists=True,
            **engines,
        )
    _check_objective(study, spec, name, storage)
    return study


def _check_objective(study: Any, spec: Spec, name: str, storage: Storage) -> None:
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(
            f"study {name!r} in {storage.shown} is to {study.direction.name.lower()}; "
            f"{spec.label} says {spec.direction}",
            hint="choose another --study, or the study's direction",
        )
    metric = study.user_attrs.get("metric")
    if metric is None:
        study.set_user_attr("metric", spec.metric)
    elif metric != spec.metric:
        raise ConfigError(
            f"study {name!r} in {storage.shown} measures {metric}; {spec.label} says {spec.metric}",
            hint="choose another --study, or the study's metric",
        )


def check_checkpoints(
    out: Path, study: Any, name: str, storage: Storage, records: int | None = None
) -> None:
    """A new trial never meets another sweep's checkpoint under its name (exit 4 instead).
    `records`: the journal's record count (0: it is empty), None for a database or none yet."""
    found = [re.fullmatch(r"trial-(\d+)\.npz", p.name) for p in out.glob("trial-*.npz")]
    numbers = sorted(int(m.group(1)) for m in found if m)
    # Read after listing: a checkpoint that exists has its trial in the storage.
    known = len(study.get_trials(deepcopy=False)) if study is not None else 0
    clash = [n for n in numbers if n >= known]
    if not clash:
        return
    if records == 0:
        raise CheckpointError(
            f"the sweep journal {storage.shown} is empty, but {out} holds {len(numbers)} trial "
            f"checkpoint(s) (trial-{numbers[0]:04d}.npz ...): the study's record is lost",
            hint="restore the journal from a copy, or move those checkpoints away (or choose "
            "another --out) to start a new study",
        )
    raise CheckpointError(
        f"{out / f'trial-{clash[0]:04d}.npz'} is not a trial of study {name!r} (it has "
        f"{known} trials in {storage.shown}): {out} holds the checkpoints of another sweep, "
        "or the study lost its last trials",
        hint="choose another --out (or --study), or move those files away",
    )


def recover_stale(study: Any, storage: Storage) -> None:
    """Trials left RUNNING by a process of this machine that is gone (killed, crashed), or
    with no process recorded at all (a journal write that failed or was cut): FAIL."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    for trial in trials:
        attrs = trial.user_attrs
        if attrs.get("host") == HOST and not pid_alive(attrs.get("pid")):
            _fail(study, trial.number, f"left running by process {attrs.get('pid')}, which is gone")
    unowned = [t.number for t in trials if "host" not in t.user_attrs]
    if unowned and storage.lock_file is not None:
        from optuna.storages.journal import JournalFileSymlinkLock

        # A worker records its host and pid while it holds this lock, so a trial without
        # them, seen under the lock, has no process: its records were lost.
        lock = JournalFileSymlinkLock(storage.lock_file)
        lock.acquire()
        try:
            for trial in study.get_trials(deepcopy=False):
                if trial.state.name == "RUNNING" and "host" not in trial.user_attrs:
                    _fail(study, trial.number, "left running with no record of its process")
        finally:
            with contextlib.suppress(RuntimeError):
                lock.release()


def _fail(study: Any, number: int, why: str) -> None:
    from optuna.trial import TrialState

    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    log.warning(f"trial {number} was {why}; recorded as failed")


def remove_stale_locks(out: Path, study: Any) -> None:
    """The `.trial-NNNN.npz.lock` files of finished trials (a worker killed with -9 leaves its
    own). The kernel released the lock when the process died; the file is taken and removed
    here as its owner would have (bptrain.run.outfile). A trial still running, here or on
    another machine, keeps its lock: only a finished trial's is ever touched."""
    if outfile.fcntl is None:  # no advisory locks: a lock file cannot be told stale
        return
    ended = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    for lock in out.glob(".trial-*.npz.lock"):
        found = re.fullmatch(r"\.trial-(\d+)\.npz\.lock", lock.name)
        if found is None or int(found.group(1)) not in ended:
            continue
        checkpoint = out / lock.name[1 : -len(".lock")]
        with contextlib.suppress(CheckpointError, OSError), outfile.locked(checkpoint):
            pass
