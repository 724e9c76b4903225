"""What a sweep's worker processes run: samplers, pruners, and each trial as a normal
bptrain training run whose epoch records feed the pruner (see sweep.py)."""

import contextlib
import logging
import os
import re
import signal
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...errors import BptrainError, ConfigError, DivergedError, ExitCode, Interrupted
from ...run import inputs, session, threads
from ...run.inputs import DataOptions
from ...run.interrupts import INTERRUPTS, SIGNALS
from ...run.session import Hooks, TrainRequest
from ...run.tensorboard import BoardOptions
from .spec import EPOCH_METRICS, Spec
from .storage import Storage, counts, find_trial, trial_record

log = logging.getLogger("bptrain.sweep")
HOST = socket.gethostname()

# ---------------------------------------------------------------------------------------------
# What the workers run: samplers, pruners, the trials


@dataclass(frozen=True)
class Job:
    """What a worker process needs (pickled to it whole)."""

    spec: Spec
    study: str
    storage: Storage
    out: str
    data: DataOptions
    threads: int = 1
    verbose: bool = False
    index: int = 0
    seed: int | None = None  # the sampler's, derived from the spec's
    parent: int = 0  # the coordinator's pid: a worker whose coordinator is gone stops
    tensorboard: BoardOptions | None = None  # the sweep's folder; each trial writes below it


def make_sampler(optuna: Any, spec: Spec, seed: int | None) -> Any:
    options = dict(spec.sampler_options)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: running trials count as bad guesses, so workers spread out.
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=options.get("startup_trials", 10), constant_liar=True
        )


def make_pruner(optuna: Any, spec: Spec) -> Any:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    options = dict(spec.pruner_options)
    # Optuna's steps are our epochs (1, 2, ...); it may prune from step n_warmup_steps on.
    return optuna.pruners.MedianPruner(
        n_startup_trials=options.get("startup_trials", 5),
        n_warmup_steps=options.get("warmup_epochs", 0) + 1,
    )


def worker_seed(seed: int | None, start: int, index: int) -> int | None:
    """The sampler seed of worker `index`: each worker and each rerun (which starts with more
    trials in the study) draws its own suggestions, reproducibly from the spec's seed."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, start, index]).generate_state(1)[0])


class _Stopper:
    """A worker's stop request: its own signal, the coordinator's flag, or a vanished parent.

    Also the per-batch progress callback of every trial, where a request becomes the signal
    the training loop polls (it then checkpoints the step and raises Interrupted)."""

    def __init__(self, shared: Any, parent: int) -> None:
        self.shared, self.parent, self.signum = shared, parent, 0

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum
        INTERRUPTS.received = INTERRUPTS.received or signum

    def requested(self) -> int:
        if not self.signum:
            if self.shared.value:
                self.signum = self.shared.value
            elif self.parent and os.getppid() != self.parent:
                self.signum = signal.SIGHUP
        return self.signum

    def __call__(self, state: Any, steps: int, loss: float) -> None:
        if self.requested() and INTERRUPTS.received is None:
            INTERRUPTS.received = self.signum

    def close(self) -> None:
        pass


class _ChannelHandler(logging.Handler):
    """A worker's log lines, sent to the coordinator (which alone writes to stderr)."""

    def __init__(self, channel: Any, verbose: bool) -> None:
        super().__init__()
        self.channel, self.verbose = channel, verbose
        self.trial: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.name.startswith("optuna"):
                if re.match(r"Trial \d+ (failed|pruned)", text):
                    return  # the coordinator's own line says so
                text = f"optuna: {text}"
            if self.verbose and self.trial is not None:
                text = f"trial {self.trial}: {text}"
            self.channel.put(("log", record.levelno, text))
        except Exception:  # a log line must never fail a trial
            pass


@dataclass
class _Attempt:
    """One trial as its worker sees it."""

    number: int
    started: float
    path: Path
    epochs: int | None = None
    best: float | None = None
    summary: dict[str, Any] | None = None
    note: str | None = None  # why it was pruned or failed


class TrialRunner:
    """Takes trials for one worker: claims one, trains it, reports it."""

    def __init__(self, optuna: Any, job: Job, channel: Any, stopper: _Stopper) -> None:
        self.optuna, self.job, self.channel, self.stopper = optuna, job, channel, stopper
        self.spec = job.spec
        self.held: Any = None  # the ask lock, from claim() until the trial exists
        self.attempt: _Attempt | None = None
        self.handler: _ChannelHandler | None = None

    def claim(self, study: Any, lock: Any) -> bool:
        """Whether the study still needs a trial; if so the ask lock stays held until the
        objective starts, so two processes never both take the last one."""
        if lock is not None:
            try:
                lock.acquire()
            except OSError as error:  # a full or read-only folder
                from .journal import write_error

                raise write_error(self.job.storage.shown, error) from None
            self.held = lock
        if sum(map(counts, study.get_trials(deepcopy=False))) < self.spec.planned:
            return True
        self.release()
        return False

    def release(self) -> None:
        if self.held is not None:
            with contextlib.suppress(RuntimeError):  # taken over after its grace period
                self.held.release()
            self.held = None

    def objective(self, trial: Any) -> float:
        path = Path(self.job.out) / f"trial-{trial.number:04d}.npz"
        attempt = self.attempt = _Attempt(trial.number, time.perf_counter(), path)
        self.channel.put(("started", self.job.index, trial.number))
        if self.handler is not None:
            self.handler.trial = trial.number
        # Recorded before the ask lock goes: under it, a RUNNING trial without them has no
        # process (its records were lost), and study.recover_stale fails it.
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        self.release()
        try:
            if self.stopper.requested():
                raise Interrupted("stopped before training", signum=self.stopper.requested())
            request, epochs = self._request(trial, path)
            hooks = Hooks(
                emit=lambda record: self._on_record(trial, record, epochs),
                progress=lambda total: self.stopper,
            )
            session.train(request, hooks)
            return self._value()
        except BaseException as error:
            attempt.note = error.message if isinstance(error, Interrupted) else str(error)
            if isinstance(error, (DivergedError, ConfigError)):  # the trial's own failure
                trial.set_user_attr("counted", True)
                trial.set_user_attr("error", str(error)[:2000])
            raise

    def _request(self, trial: Any, path: Path) -> tuple[TrainRequest, int]:
        """The trial's train request (its config recorded for best.yaml) and its epochs."""
        params = {p.path: p.suggest(trial) for p in self.spec.space}
        overrides = self.spec.overrides_for(params)
        loaded = inputs.config_of(self.spec.base, overrides)
        seed = loaded.config.seed
        if seed is None:  # `seed: null`: each trial draws one, recorded like the rest
            seed = inputs.draw_seed()
            overrides = (*overrides, f"seed={seed}")
        trial.set_user_attr("config", replace(loaded.config, seed=seed).to_dict())
        trial.set_user_attr("checkpoint", str(path))
        board = self.job.tensorboard
        request = TrainRequest(
            config=self.spec.base, overrides=overrides, data=self.job.data, out=str(path),
            tensorboard=board.for_trial(trial.number) if board is not None else None,
        )  # fmt: skip
        return request, loaded.config.train.epochs

    def _on_record(self, trial: Any, record: dict[str, Any], epochs: int) -> None:
        """Each epoch's metric to the pruner (the epoch's checkpoint is already written)."""
        attempt, metric = self.attempt, self.spec.metric
        assert attempt is not None
        if record.get("event") == "summary":
            attempt.summary = record
            return
        attempt.epochs = record["epoch"]
        value = record.get(metric)
        if metric not in EPOCH_METRICS or value is None:
            return
        if attempt.best is None or (value > attempt.best) == self.spec.maximize:
            attempt.best = value
        trial.report(float(value), attempt.epochs)
        if attempt.epochs < epochs and trial.should_prune():
            raise self.optuna.TrialPruned(f"after epoch {attempt.epochs}: {metric} {value:.4g}")

    def _value(self) -> float:
        """The trial's value: an epoch metric's best epoch (for val_accuracy, the summary's
        best_val_accuracy), or a test metric from the summary."""
        attempt, metric = self.attempt, self.spec.metric
        assert attempt is not None
        value = attempt.best if metric in EPOCH_METRICS else (attempt.summary or {}).get(metric)
        if value is None:
            raise ConfigError(f"the run reported no {metric}", path="metric")
        return float(value)

    def report(self, study: Any) -> None:
        """Send the finished trial's record (and why it failed or was pruned)."""
        attempt, self.attempt = self.attempt, None
        if attempt is None:
            return
        if self.handler is not None:
            self.handler.trial = None
        seconds = time.perf_counter() - attempt.started
        record = trial_record(
            find_trial(study, attempt.number), attempt.epochs, seconds, attempt.path
        )
        self.channel.put(("trial", self.job.index, record, attempt.note))


def _route_logs(optuna: Any, channel: Any, verbose: bool) -> _ChannelHandler:
    """A worker's bptrain and Optuna log lines go to the coordinator; warnings only, unless -v."""
    handler = _ChannelHandler(channel, verbose)
    root = logging.getLogger("bptrain")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    logging.getLogger("optuna").addHandler(handler)
    logging.captureWarnings(True)  # Python warnings (Optuna's, NumPy's) take the same way
    logging.getLogger("py.warnings").handlers[:] = [handler]
    return handler


def _take_trials(job: Job, channel: Any, stopper: _Stopper) -> None:
    import optuna

    runner = TrialRunner(optuna, job, channel, stopper)
    runner.handler = _route_logs(optuna, channel, job.verbose)
    study = optuna.load_study(
        study_name=job.study,
        storage=job.storage.open(heartbeat=True),
        sampler=make_sampler(optuna, job.spec, job.seed),
        pruner=make_pruner(optuna, job.spec),
    )
    lock = None
    if job.storage.lock_file is not None:
        from optuna.storages.journal import JournalFileSymlinkLock

        lock = JournalFileSymlinkLock(job.storage.lock_file)
    while not stopper.requested() and runner.claim(study, lock):
        try:
            # A diverged trial, or a combination of values the config refuses: FAIL, go on.
            study.optimize(runner.objective, n_trials=1, catch=(DivergedError, ConfigError))
        finally:
            runner.release()
            runner.report(study)


def worker_main(job: Job, channel: Any, stop: Any) -> None:
    """A worker process: take trials until the study has its trials or a stop is requested;
    the last message says how it ended (None, or (exit code, message, traceback))."""
    stopper = _Stopper(stop, job.parent)
    for signum in SIGNALS:
        signal.signal(signum, stopper.on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # blocked while it was started
    error: tuple[int, str, str | None] | None = None
    try:
        with threads.blas_threads(job.threads):
            _take_trials(job, channel, stopper)
    except Interrupted:
        pass
    except BptrainError as failure:
        error = (int(failure.exit_code), str(failure), None)
    except BaseException as failure:
        cause = _storage_failure(failure)
        if cause is not None:  # a journal write failed, then Optuna's own handling did too
            error = (int(cause.exit_code), str(cause), None)
        else:  # a bug: the coordinator reports it (exit 70)
            error = _internal(job, failure)
    channel.put(("done", job.index, error))


def _storage_failure(failure: BaseException) -> BptrainError | None:
    """The journal write error behind `failure`: when Optuna cannot record a trial's end, its
    finally clause raises an AssertionError of its own, with the write error as its context."""
    from .journal import JournalWriteError  # imports Optuna, which a worker has

    seen: BaseException | None = failure
    while seen is not None:
        if isinstance(seen, JournalWriteError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _internal(job: Job, failure: BaseException) -> tuple[int, str, str]:
    return (
        int(ExitCode.INTERNAL),
        f"internal error in sweep worker {job.index}: {type(failure).__name__}: {failure} "
        "(this is a bug in bptrain; rerun with -v to see where, and report it)",
        traceback.format_exc(),
    )
