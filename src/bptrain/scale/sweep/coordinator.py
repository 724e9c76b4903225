"""The coordinator: starts a sweep's worker processes, relays what they send, stops them.

Workers (`worker.worker_main`, started with multiprocessing's "spawn") take trials until the
study has its trials. The coordinator alone writes (through its Reporter): trial records to
stdout, logs and progress to stderr (the workers send theirs over a queue), and best.yaml.

Signals: the workers never raise on a signal. The first Ctrl-C, SIGTERM or SIGHUP (sent to the
whole process group by a terminal or Slurm, or to the coordinator alone by `timeout` and
passed on through a shared flag) ends each running trial at the end of its current step: its
checkpoint is written, the trial is recorded FAIL, the worker exits, and the coordinator raises
Interrupted (exit 128 + signal). A second signal kills the workers and records their trials
FAIL from the coordinator. No trial is left RUNNING in the storage either way (a storage that
cannot be written, such as a full disk, leaves it to the next run: see study.recover_stale).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import BptrainError, ExitCode, Interrupted, signal_word
from ...run.interrupts import INTERRUPTS, SIGNALS
from .reporting import Reporter
from .storage import counts, done_count, find_trial, trial_record
from .worker import Job, worker_main, worker_seed

log = logging.getLogger("bptrain.sweep")
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


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


def _fail() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


class Coordinator:
    """Starts the workers, relays what they send, stops them on a signal, sums up."""

    def __init__(
        self, study: Any, job: Job, workers: int, reporter: Reporter,
        progress: Callable[[int, int], Any],
    ) -> None:  # fmt: skip
        self.study, self.job, self.workers = study, job, workers
        self.spec, self.report, self.progress = job.spec, reporter, progress
        self.procs: list[Any] = []
        self.running: dict[int, int] = {}  # worker -> trial number
        self.done: dict[int, Any] = {}  # worker -> None, or its error
        self.announced = False
        self.interrupted: int | None = None  # the signal that stopped this run's workers

    def run(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        remaining = self.spec.planned - sum(map(counts, trials))
        workers = max(0, min(self.workers, remaining))
        self.report.best.refresh(self.study)
        self.report.start(len(trials), workers)
        self.report.bar = self.progress(self.spec.planned, done_count(trials))
        try:
            if workers:
                self._run_workers(workers, len(trials))
        finally:
            if self.report.bar is not None:
                self.report.bar.close()
        self._raise_failures()
        return self.report.finish(self.study)

    def _run_workers(self, workers: int, start: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no forked BLAS or Optuna state
        self.channel, self.stop = context.Queue(), context.RawValue("i", 0)
        INTERRUPTS.received = None
        with INTERRUPTS.deferred():
            try:
                with _blas_environment(self.job.threads), _signals_blocked():
                    self._start(context, workers, start)
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

    def _start(self, context: Any, workers: int, start: int) -> None:
        for index in range(workers):
            seed = worker_seed(self.spec.seed, start, index)
            process = context.Process(
                target=worker_main,
                args=(replace(self.job, index=index, seed=seed), self.channel, self.stop),
                name=f"bptrain-sweep-{index}",
            )
            process.start()
            self.procs.append(process)

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
            self.report.log(
                logging.INFO,
                f"{signal_word(INTERRUPTS.received)}: stopping the running trials at the end of "
                "their step (press Ctrl-C again to abort)",
            )

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, index = message[0], message[1] if len(message) > 1 else None
        if kind == "log":
            self.report.log(message[1], message[2])
        elif kind == "started":
            self.running[index] = message[2]
        elif kind == "trial":
            self.running.pop(index, None)
            self.report.trial(self.study, message[2], message[3])
        elif kind == "done":
            self.done[index] = message[2]
            if message[2] is not None and not self.stop.value:
                self.stop.value = signal.SIGTERM  # one worker failed: the others stop too

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
            self.report.log(
                logging.WARNING,
                f"sweep worker {index} ended unexpectedly (exit code {process.exitcode}){where}",
            )
            if number is not None:
                self._fail_trial(number)

    def _fail_trial(self, number: int) -> None:
        """FAIL a trial whose worker cannot (it is gone), and report it like the others."""
        try:
            self.study.tell(number, state=_fail(), skip_if_finished=True)
        except Exception as error:  # the storage itself is failing: the next run fails it
            log.warning(f"could not record trial {number} as failed: {error}")
        try:
            trial = find_trial(self.study, number)
        except Exception as error:
            log.warning(f"could not read trial {number}: {error}")
            return
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        path = Path(self.job.out) / f"trial-{number:04d}.npz"
        record = trial_record(trial, None, time.time() - started, path)
        self.report.trial(self.study, record, "its worker was ended")

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
                self.report.emitting = False
        self.running.clear()

    def _halt(self) -> None:
        """Stop the workers at their next step and wait for them (kill them on a signal)."""
        self.report.emitting = False
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
