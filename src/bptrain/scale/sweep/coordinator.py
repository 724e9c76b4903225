"""Hyperparameter sweeps on Optuna: every trial is a normal bptrain training run.

The process `bptrain sweep` starts (the coordinator) checks the spec, opens the study (a journal
file in the output folder unless --storage names another), then runs worker processes
(`worker_main`, started with multiprocessing's "spawn") that take trials until the study has
its trials. The coordinator alone writes: trial records to `emit`, logs and progress to stderr
(the workers send theirs over a queue), and best.yaml.

Signals: the workers never raise on a signal. The first Ctrl-C, SIGTERM or SIGHUP (sent to the
whole process group by a terminal or Slurm, or to the coordinator alone by `timeout` and
passed on through a shared flag) ends each running trial at the end of its current step: its
checkpoint is written, the trial is recorded FAIL, the worker exits, and the coordinator raises
Interrupted (exit 128 + signal). A second signal kills the workers and records their trials
FAIL from the coordinator. No trial is left RUNNING in the storage either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ... import extras
from ...errors import BptrainError, CheckpointError, ConfigError, ExitCode, Interrupted, signal_word
from ...run import artifact, inputs
from ...run.inputs import DataOptions
from ...run.interrupts import INTERRUPTS, SIGNALS
from .spec import Spec, load_spec
from .storage import Storage, best_of, counts, done_count, find_trial, storage_of, trial_record
from .worker import Job, worker_main, worker_seed

log = logging.getLogger("bptrain.sweep")
HOST = socket.gethostname()
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# ---------------------------------------------------------------------------------------------
# The coordinator


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
    _make_folder(out)
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(optuna, spec, name, storage)
        check_checkpoints(out, study, name)
        recover_stale(study)
        job = Job(spec, name, storage, str(out), request.data, request.threads or 1,
                  request.verbose, parent=os.getpid())  # fmt: skip
        return Coordinator(study, job, request.workers, emit, progress).run()
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


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(
            f"cannot create --out folder {out}: {error.strerror or error}",
            hint="choose another --out",
        ) from None


def open_study(optuna: Any, spec: Spec, name: str, storage: Storage) -> Any:
    """Create the study, or load it (a rerun, another machine); it must want what the spec does."""
    study = optuna.create_study(
        study_name=name, storage=storage.open(), direction=spec.direction, load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner(),
    )  # fmt: skip
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
    return study


def check_checkpoints(out: Path, study: Any, name: str) -> None:
    """A new trial never meets another sweep's checkpoint under its name (exit 4 instead)."""
    found = [re.fullmatch(r"trial-(\d+)\.npz", p.name) for p in out.glob("trial-*.npz")]
    numbers = sorted(int(m.group(1)) for m in found if m)
    known = len(study.get_trials(deepcopy=False))  # read after listing: a file has its trial
    clash = [n for n in numbers if n >= known]
    if clash:
        raise CheckpointError(
            f"{out / f'trial-{clash[0]:04d}.npz'} is not a trial of study {name!r} (it has "
            f"{known} trials): {out} holds the checkpoints of another sweep",
            hint="choose another --out (or --study), or remove those files",
        )


def recover_stale(study: Any) -> None:
    """Trials left RUNNING by a process of this machine that is gone (killed, crashed): FAIL."""
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        mine = trial.state.name == "RUNNING" and attrs.get("host") == HOST
        if mine and not _alive(attrs.get("pid")):
            study.tell(trial.number, state=_fail(), skip_if_finished=True)
            log.warning(
                f"trial {trial.number} was left running by process {attrs.get('pid')}, "
                "which is gone; recorded as failed"
            )


def _fail() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _blas_environment(threads: int) -> Iterator[None]:
    """BLAS threads for processes started inside (set before they import NumPy)."""
    saved = {name: os.environ.get(name) for name in BLAS_VARIABLES}
    os.environ.update({name: str(threads) for name in BLAS_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Signals wait (in this process and in the workers started inside, which unblock them
    once their handlers are in place) instead of killing a worker that is still starting."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class BestFile:
    """OUT/best.yaml: the full config of the study's best trial, replaced atomically."""

    def __init__(self, path: Path, job: Job) -> None:
        self.path, self.job = path, job
        self.written: int | None = None

    def refresh(self, study: Any) -> Any:
        """Write the best trial's config if it changed; returns the best trial (or None).
        Read again after writing: another process may have found a better one meanwhile."""
        best = best_of(study)
        for _ in range(3):
            if best is None or best.number == self.written:
                return best
            config = best.user_attrs.get("config")
            if not isinstance(config, dict):
                return best
            self._write(best, config)
            self.written = best.number
            best = best_of(study)
        return best

    def _write(self, best: Any, config: dict[str, Any]) -> None:
        try:
            text = inputs.config_of(str(self.path), raw=config).config.to_yaml()
        except ConfigError as error:
            log.warning(f"trial {best.number}: its recorded config is unusable ({error})")
            return
        params = ", ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        job = self.job
        header = (
            f"# The best trial of sweep study '{job.study}' ({job.storage.shown}): trial "
            f"{best.number}, {job.spec.metric} {best.value:.6g}\n# {params}\n"
            f"# Retrain it: bptrain train {self.path} --threads {job.threads} (and the "
            "sweep's data options)\n"
        )
        artifact.write(header + text, self.path, overwrite=True, what="best.yaml")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Coordinator:
    """Starts the workers, relays what they send, stops them on a signal, sums up."""

    def __init__(
        self, study: Any, job: Job, workers: int, emit: Callable[[dict[str, Any]], None],
        progress: Callable[[int, int], Any],
    ) -> None:  # fmt: skip
        self.study, self.job, self.workers = study, job, workers
        self.spec, self.emit, self.progress = job.spec, emit, progress
        self.best = BestFile(Path(job.out) / "best.yaml", job)
        self.bar: Any = None
        self.procs: list[Any] = []
        self.running: dict[int, int] = {}  # worker -> trial number
        self.done: dict[int, Any] = {}  # worker -> None, or its error
        self.emitting = True
        self.announced = False
        self.interrupted: int | None = None  # the signal that stopped this run's workers

    def run(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        remaining = self.spec.planned - sum(map(counts, trials))
        workers = max(0, min(self.workers, remaining))
        self.best.refresh(self.study)
        self._log_start(len(trials), workers)
        self.bar = self.progress(self.spec.planned, done_count(trials))
        try:
            if workers:
                self._run_workers(workers, len(trials))
        finally:
            if self.bar is not None:
                self.bar.close()
        self._raise_failures()
        best = self.best.refresh(self.study)
        record = self._record(best)
        self.emit(record)
        self._log_end(record)
        return record

    def _log_start(self, known: int, workers: int) -> None:
        job = self.job
        threads = f"{job.threads} BLAS thread{'s' if job.threads > 1 else ''}"
        log.info(
            f"sweep study '{job.study}' ({job.storage.shown}): {self.spec.planned} trials "
            f"planned, {known} in the study so far; {workers} worker(s) here with {threads} "
            f"each; checkpoints and best.yaml in {job.out}"
        )

    def _run_workers(self, workers: int, start: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no forked BLAS or Optuna state
        self.channel, self.stop = context.Queue(), context.RawValue("i", 0)
        INTERRUPTS.received = None
        with INTERRUPTS.deferred():
            try:
                with _blas_environment(self.job.threads), _signals_blocked():
                    for index in range(workers):
                        job = replace(
                            self.job, index=index,
                            seed=worker_seed(self.spec.seed, start, index),
                        )  # fmt: skip
                        process = context.Process(
                            target=worker_main, args=(job, self.channel, self.stop),
                            name=f"bptrain-sweep-{index}",
                        )  # fmt: skip
                        process.start()
                        self.procs.append(process)
                self._wait()
            except Interrupted as again:  # a second signal: stop now
                self._kill()
                raise Interrupted(
                    f"{signal_word(again.signum)} again: the workers were stopped at once and "
                    "their running trials recorded as failed",
                    signum=again.signum,
                    hint="run the same command again to continue the study",
                ) from None
            except BaseException:  # stdout closed, a full disk, a bug: stop the workers first
                self._halt()
                raise
            finally:
                self.interrupted = INTERRUPTS.received

    def _wait(self) -> None:
        while any(p.is_alive() for p in self.procs):
            self._check_signal()
            try:
                message = self.channel.get(timeout=0.25)
            except queue.Empty:
                self._reap(final=False)
                continue
            self._handle(message)
        with contextlib.suppress(queue.Empty):
            while True:  # what the workers sent just before they ended
                self._handle(self.channel.get(timeout=0.5))
        self._reap(final=True)

    def _check_signal(self) -> None:
        if INTERRUPTS.received and not self.stop.value:
            self.stop.value = INTERRUPTS.received
        if self.stop.value and not self.announced and INTERRUPTS.received:
            self.announced = True
            self._log(
                logging.INFO,
                f"{signal_word(INTERRUPTS.received)}: stopping the running trials at the end of "
                "their step (press Ctrl-C again to abort)",
            )

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1] if len(message) > 1 else None
        if kind == "log":
            self._log(message[1], message[2])
        elif kind == "started":
            self.running[index] = message[2]
        elif kind == "trial":
            self.running.pop(index, None)
            self._trial(message[2], message[3])
        elif kind == "done":
            self.done[index] = message[2]
            if message[2] is not None and not self.stop.value:
                self.stop.value = signal.SIGTERM  # one worker failed: the others stop too

    def _log(self, level: int, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        log.log(level, text)
        if self.bar is not None:
            self.bar.refresh()

    def _trial(self, record: dict[str, Any], note: str | None) -> None:
        if self.emitting:
            self.emit(record)
        best = self.best.refresh(self.study) if record["state"] == "COMPLETE" else None
        best = best or best_of(self.study)
        done = done_count(self.study.get_trials(deepcopy=False))
        if self.bar is not None:  # drawn again by _log, below the trial's line
            self.bar.n = done
            shown = f"best {best.value:.4g} (trial {best.number})" if best is not None else ""
            self.bar.set_postfix_str(shown, refresh=False)
        level = logging.WARNING if record["state"] == "FAIL" else logging.INFO
        if self.emitting:  # else stdout closed: the sweep stops as quietly as train does
            self._log(level, self._trial_line(record, note, done, best))

    def _trial_line(self, record: dict[str, Any], note: str | None, done: int, best: Any) -> str:
        metric, value, state = self.spec.metric, record["value"], record["state"]
        params = ", ".join(f"{k}={_short(v)}" for k, v in record["params"].items())
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

    def _reap(self, *, final: bool) -> None:
        """Workers that ended without saying so (killed, crashed): their trial is FAIL."""
        for index, process in enumerate(self.procs):
            if index in self.done or process.exitcode is None:
                continue
            if process.exitcode == 0 and not final:
                continue  # its last message is on the way
            self.done[index] = "died"
            number = self.running.pop(index, None)
            where = f"; trial {number} recorded as failed" if number is not None else ""
            self._log(
                logging.WARNING,
                f"sweep worker {index} ended unexpectedly (exit code {process.exitcode}){where}",
            )
            if number is not None:
                self._fail_trial(number)

    def _fail_trial(self, number: int) -> None:
        """FAIL a trial whose worker cannot (it is gone), and report it like the others."""
        try:
            self.study.tell(number, state=_fail(), skip_if_finished=True)
            trial = find_trial(self.study, number)
        except Exception as error:  # the storage itself is failing: say so, carry on
            log.warning(f"could not record trial {number} as failed: {error}")
            return
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        path = Path(self.job.out) / f"trial-{number:04d}.npz"
        self._trial(trial_record(trial, None, time.time() - started, path), "its worker was ended")

    def _kill(self) -> None:
        for process in self.procs:
            if process.is_alive():
                process.kill()
        for process in self.procs:
            process.join(10)
        for number in list(self.running.values()):
            try:
                self._fail_trial(number)
            except Exception:  # stdout closed meanwhile: the trial is recorded all the same
                self.emitting = False
        self.running.clear()

    def _halt(self) -> None:
        """Stop the workers at their next step and wait for them (kill them on a signal)."""
        self.emitting = False
        self.stop.value = self.stop.value or signal.SIGTERM
        try:
            self._wait()
        except BaseException:
            self._kill()

    def _raise_failures(self) -> None:
        errors = [e for e in self.done.values() if isinstance(e, tuple)]
        if errors:
            code, message, trace = errors[0]
            if trace:
                log.debug(trace)
            failure = BptrainError(message)
            failure.exit_code = ExitCode(code)
            raise failure
        if self.interrupted:
            known = sum(map(counts, self.study.get_trials(deepcopy=False)))
            raise Interrupted(
                f"{signal_word(self.interrupted)}: the running trials were stopped and "
                f"recorded as failed; study '{self.job.study}' has {known} of its "
                f"{self.spec.planned} trials",
                signum=self.interrupted,
                hint="run the same command again to continue the study",
            )

    def _record(self, best: Any) -> dict[str, Any]:
        states = Counter(t.state.name for t in self.study.get_trials(deepcopy=False))
        return {
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

    def _log_end(self, record: dict[str, Any]) -> None:
        if record["best_trial"] is None:
            log.warning(f"study '{self.job.study}' has no complete trial yet: no best.yaml")
            return
        log.info(
            f"best: trial {record['best_trial']}, {self.spec.metric} "
            f"{record['best_value']:.4g}; {record['n_complete']} complete, "
            f"{record['n_pruned']} pruned, {record['n_failed']} failed; retrain it with: "
            f"bptrain train {self.best.path} --threads {self.job.threads}"
        )
