"""The training session: a `train` request planned, its checkpoint reserved, the run trained.

A run's life: plan (config, seed, resume rules), reserve and lock the checkpoint path before
minutes of loading, prepare or resume, then `Training` runs the epochs: a checkpoint after
every epoch and on a signal, best and averaged weights, the test and the summary. Nothing here
writes to stdout or picks an exit code: records go to `Hooks.emit`, human lines to the logger,
and failures are raised as the errors of `errors.py` (the console maps them to exit codes).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import LoadedConfig, parse_override
from ..engine.train import FitHooks, FitOptions, TrainState, evaluate, fit
from ..errors import ConfigError, Interrupted, OutputError, StdoutClosed
from . import checkpoint, init_from, outfile, tensorboard
from .checkpoint import Checkpoint
from .inputs import (
    NO_DATA_OPTIONS,
    DataOptions,
    Run,
    check_fits,
    check_stack,
    config_of,
    draw_seed,
    load_dataset,
    prepare,
    resume,
    with_stored_folder,
)
from .interrupts import INTERRUPTS
from .model import check_target, config_of_checkpoint, seconds_to_target
from .tensorboard import BoardOptions

log = logging.getLogger(__name__)


@dataclass
class Hooks:
    """How a run reports: records to `emit`, a progress callback per run, stdin for '-'."""

    emit: Callable[[dict[str, Any]], None]
    progress: Callable[[int], Any] = lambda epochs: None
    read_stdin: Callable[[], str] = lambda: ""


@dataclass(frozen=True)
class TrainRequest:
    """What `bptrain train` was asked to do."""

    config: str | None = None
    overrides: tuple[str, ...] = ()
    data: DataOptions = NO_DATA_OPTIONS
    out: str | None = None
    overwrite: bool = False
    resume: str | None = None
    target_accuracy: float | None = None
    dry_run: bool = False
    init_from: str | None = None  # a weights file the new run starts from
    tensorboard: BoardOptions | None = None  # where the epochs go as TensorBoard events


# What a resumed run may change: how long and how it is trained and evaluated, and where the
# data is. The model, optimizer, seed and data split are fixed by the checkpoint.
RESUMABLE = ("train.", "data.dir", "data.mirrors")


@dataclass
class Plan:
    """A train request resolved: its config, seed, and the checkpoint it resumes (if any)."""

    loaded: LoadedConfig
    seed: int
    ckpt: Checkpoint | None = None


def plan(request: TrainRequest, read_stdin: Callable[[], str] = lambda: "") -> Plan:
    """The config a request trains (with --set applied) and its seed; checks resume rules."""
    if request.resume is None:
        _refuse_layers_option()
        loaded = config_of(request.config, request.overrides, read_stdin=read_stdin)
        seed = loaded.config.seed
        return Plan(loaded, seed if seed is not None else draw_seed())
    if request.config is not None:
        raise ConfigError(
            "give either CONFIG or --resume (a resumed run uses the config stored in its "
            "checkpoint; change it with --set)"
        )
    if request.dry_run:
        raise ConfigError("--dry-run starts a new run; it cannot be combined with --resume")
    ckpt = checkpoint.load(request.resume)
    overrides = resumable_overrides(request.overrides, ckpt)
    config_of_checkpoint(ckpt)  # the stored config alone must be sound: else exit 4
    loaded = config_of(request.resume, overrides, raw=ckpt.info.config)  # --set errors: exit 2
    return Plan(loaded, ckpt.info.seed, ckpt)


def _refuse_layers_option() -> None:
    """--layers names the files of a checkpoint's layers; a config names its own files."""
    from ..custom.registration import given

    if given():
        raise ConfigError(
            "--layers is for --resume (the files a checkpoint's layers come from); a new run "
            "imports the files its config names",
            hint="name the layer in the config, e.g. {type: my_layers.py:Relu}",
        )


def resumable_overrides(overrides: Sequence[str], ckpt: Checkpoint) -> tuple[str, ...]:
    """The --set values a resume applies; a value equal to the stored one is accepted as is."""
    kept = []
    for text in overrides:
        parts, value = parse_override(text)
        key = text.partition("=")[0].strip()
        stored = _lookup(ckpt.info.config, parts)
        if key.startswith(RESUMABLE):
            if key == "train.batch_size" and ckpt.step > 0 and value != stored:
                raise ConfigError(
                    "--set train.batch_size: the checkpoint stopped mid-epoch, in batches of "
                    f"{stored}",
                    hint="resume with the same batch size, or from an epoch's checkpoint",
                )
            kept.append(text)
        elif value != stored:
            raise ConfigError(
                f"--set {key}: a resumed run cannot change this (only train.*, data.dir, "
                f"data.mirrors; the checkpoint has {stored!r})",
                hint="start a new run with the changed config instead",
            )
    return tuple(kept)


def _lookup(raw: Any, parts: Sequence[str | int]) -> Any:
    for part in parts:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def print_config(request: TrainRequest, read_stdin: Callable[[], str]) -> str:
    """The merged, validated config as YAML that `train` reads back (the drawn seed filled in)."""
    resolved = plan(request, read_stdin)
    config = resolved.loaded.config
    check_stack(resolved.loaded, request.data)
    return replace(config, seed=resolved.seed).to_yaml()


@contextlib.contextmanager
def _checkpoint_path(request: TrainRequest, loaded: LoadedConfig) -> Iterator[Path | None]:
    """The checkpoint's path, checked, reserved and locked for the run (None for a dry run)."""
    if request.dry_run:
        yield None
        return
    if request.out is None and request.resume is None:
        with outfile.reserved_default(Path("runs"), loaded.name) as path:
            yield path
        return
    path = Path(request.out or request.resume)  # type: ignore[arg-type]
    resuming = Path(request.resume) if request.resume else None
    outfile.refuse_existing(path, overwrite=request.overwrite, resuming=resuming)
    with outfile.locked(path, label="--out" if request.out else "--resume"):
        yield path


def train(request: TrainRequest, hooks: Hooks, parallel: Any = None) -> dict[str, Any]:
    """Train as requested; returns the summary record (also emitted).

    With `parallel` (parallel.Parallel, under mpiexec), rank 0 plans, reserves the checkpoint,
    loads (or downloads) the data and builds the run first; the other ranks wait for its
    verified folder and seed (or its failure), then do the same offline and save nothing.
    """
    started = time.perf_counter()  # the run's clock includes planning and loading the data
    if request.init_from is not None and request.resume is not None:
        raise ConfigError(
            "give either --init-from or --resume (a resumed run continues from its own "
            "checkpoint's weights)"
        )
    root = parallel is None or parallel.is_root
    shared: tuple[str | None, int | None] = (None, None)
    if not root:
        shared = parallel.share_start()
        request = replace(request, data=replace(request.data, data_dir=shared[0], offline=True))
    resolved = plan(request, hooks.read_stdin)
    _check_zero_epochs(request, resolved)
    if shared[1] is not None:
        resolved.seed = shared[1]  # a drawn seed is rank 0's: every rank draws the same batches
    if resolved.loaded.config.seed is None:
        log.info(f"no seed in the config; drew seed {resolved.seed} (recorded in the checkpoint)")
    source = init_from.read_checked(request.init_from, resolved.loaded, request.data)
    if root and request.tensorboard is not None and not request.dry_run:
        tensorboard.check(request.tensorboard)
    # The checkpoint path is checked and locked before minutes of loading, not after.
    reserve = _checkpoint_path(request, resolved.loaded) if root else contextlib.nullcontext()
    with reserve as out:
        run = _start(request, resolved, source)
        if parallel is not None and root:  # every check passed here: the others may start
            parallel.share_start(str(run.dataset.folder), resolved.seed)
        _log_start(run, resolved.loaded, resolved.ckpt, out)
        return Training(run, out, hooks, request, parallel, started).execute()


def _check_zero_epochs(request: TrainRequest, resolved: Plan) -> None:
    """0 epochs is how weights trained elsewhere come in unchanged: tested and saved as a
    checkpoint that eval, predict, graph and serve read. Without --init-from it trains nothing."""
    epochs = resolved.loaded.config.train.epochs
    if epochs == 0 and (request.init_from is None or request.resume is not None):
        raise resolved.loaded.locate(
            ConfigError(
                "0 epochs trains nothing; it only brings --init-from's weights in as they are",
                path="train.epochs",
                hint="train at least 1 epoch, or give --init-from FILE",
            )
        )


def _start(request: TrainRequest, resolved: Plan, source: init_from.Source | None = None) -> Run:
    """Load the data, then build the run fresh (from --init-from's weights, if given) or from
    the checkpoint it resumes."""
    loaded, ckpt = resolved.loaded, resolved.ckpt
    data = with_stored_folder(request.data, loaded.config, ckpt) if ckpt else request.data
    dataset = load_dataset(loaded.config, data)
    if ckpt is not None:
        check_fits(ckpt, dataset)
    try:
        run = prepare(loaded.config, resolved.seed, dataset)
        if source is not None:
            init_from.apply(source, run)
    except ConfigError as error:
        raise loaded.locate(error) from None
    run.name = loaded.name
    if ckpt is not None:
        resume(ckpt, run)
    if request.dry_run:
        _shrink_for_dry_run(run)
    return run


def _shrink_for_dry_run(run: Run, batches: int = 3) -> None:
    """A few batches of train, validation and test: does the whole pipeline work?"""
    size = run.config.train.batch_size * batches
    run.train_rows = run.train_rows[:size]
    run.val = (run.val[0][:size], run.val[1][:size])
    run.test = (run.test[0][:size], run.test[1][:size])


def _log_start(run: Run, loaded: LoadedConfig, ckpt: Checkpoint | None, out: Path | None) -> None:
    state, epochs = run.state, run.config.train.epochs
    if ckpt is not None:
        if state.epoch >= epochs or state.stopped_early:
            log.info(f"{ckpt.path}: training already complete ({state.epoch} epochs); testing")
        elif state.step:
            log.info(f"resuming {ckpt.path} at epoch {state.epoch + 1}, step {state.step + 1}")
        else:
            log.info(f"resuming {ckpt.path} after epoch {state.epoch}")
    log.debug(run.network.describe())
    where = f"checkpoint {out}" if out else "dry run: nothing saved"
    log.info(
        f"training {loaded.name} on {run.dataset.name}: {len(run.train_rows)} train, "
        f"{run.val[0].shape[0]} validation, {run.test[0].shape[0]} test samples; {where}"
    )


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    val = ""
    if record["val_accuracy"] is not None:
        val = f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.2%}"
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
        f"acc {record['train_accuracy']:.2%}{val}  {record['seconds']:.1f}s  "
        f"{record['samples_per_second'] or 0:,.0f} samples/s"
    )


class Training:
    """One training run from its first (or resumed) step to its summary."""

    def __init__(
        self,
        run: Run,
        out: Path | None,
        hooks: Hooks,
        request: TrainRequest,
        parallel: Any = None,
        started: float | None = None,
    ) -> None:
        self.run, self.out, self.hooks, self.request = run, out, hooks, request
        self.parallel = parallel
        # The run's clock: earlier sessions' time (from the checkpoint) plus this one's.
        self.started = time.perf_counter() if started is None else started
        self.clock_base = run.state.wall_seconds
        self.epochs = run.state.epoch + 1 if request.dry_run else run.config.train.epochs
        self.progress = hooks.progress(self.epochs)
        self.output_error: BaseException | None = None  # stdout failed: stop, then report
        self.announced = False
        self.board: tensorboard.Board | None = None  # open while execute() runs

    def clock(self) -> float:
        """Wall seconds of the run so far, across resumes (data loading included)."""
        return self.clock_base + time.perf_counter() - self.started

    def save(self, state: TrainState, **meta: Any) -> None:
        state.wall_seconds = self.clock()
        if self.out is not None:
            r = self.run
            checkpoint.save(self.out, r.network, r.optimizer, state, r.rng, r.info, **meta)

    def stop_requested(self) -> bool:
        if INTERRUPTS.received is not None and not self.announced:
            self.announced = True
            log.info("stopping at the end of this step (press Ctrl-C again to abort)")
        return INTERRUPTS.received is not None or self.output_error is not None

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None:
        self._close_progress()
        record["wall_seconds"] = self.clock()  # in the history too: it is the same dict
        if self.parallel is not None:
            record["ranks"] = self.parallel.size
            record["allreduce_seconds"] = self.parallel.take_comm_seconds()
        self.save(state, metrics=record)
        if self.board is not None:  # after the save: the events never run ahead of the file
            self.board.epoch(record, self.run.network)
        log.info(epoch_line(record, self.epochs))
        try:
            self.hooks.emit({"event": "epoch", **record})
        except (StdoutClosed, OutputError) as error:
            self.output_error = error

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def execute(self) -> dict[str, Any]:
        """Train, test and summarize, with the TensorBoard writer (if any) open throughout."""
        root = self.parallel is None or self.parallel.is_root
        self.board = tensorboard.open_board(self.request.tensorboard, root, self.request.dry_run)
        try:
            return self._execute()
        finally:  # also on an interrupt or an error: what was written is flushed
            if self.board is not None:
                self.board.close()

    def _execute(self) -> dict[str, Any]:
        r, cfg = self.run, self.run.config
        INTERRUPTS.received = None
        hooks = FitHooks(self.progress, self.on_epoch, self.stop_requested)
        if self.parallel is not None:  # the ranks share gradients and stop after the same step
            hooks = self.parallel.setup(r.network, r.seed, cfg.train.sync_batch_norm, hooks)
        options = FitOptions(
            epochs=self.epochs, batch_size=cfg.train.batch_size, val=r.val, rows=r.train_rows,
            schedule=r.schedule, early_stopping=cfg.train.early_stopping, augment=r.augmenter,
        )  # fmt: skip
        with INTERRUPTS.deferred():
            state = fit(r.network, r.optimizer, r.all_train, options, rng=r.rng, state=r.state,
                        hooks=hooks)  # fmt: skip
            self._close_progress()
            if self.stop_requested():  # a signal or a failed stdout, mid-epoch or after it
                self._stop(state)
            if state.stopped_early:
                log.info(
                    f"early stopping after epoch {state.epoch}: no validation gain for "
                    f"{cfg.train.early_stopping} epochs (best: epoch {state.best_epoch})"
                )
            return self.finish(state)

    def _stop(self, state: TrainState) -> None:
        """Checkpoint the current step, then end with the reason."""
        self.save(state, metrics=state.history[-1] if state.history else {})
        if self.output_error is not None:
            raise self.output_error
        done = state.epoch >= self.epochs or state.stopped_early
        where = (
            "after the last epoch, before the test evaluation"
            if done
            else f"at epoch {state.epoch + 1}, step {state.step}"
            if state.step
            else f"after epoch {state.epoch}"
        )
        saved = f"checkpoint saved to {self.out}" if self.out else "dry run: nothing saved"
        signum = INTERRUPTS.received or signal.SIGINT
        word = Interrupted(signum=signum).message
        raise Interrupted(
            f"{word} {where}; {saved}",
            signum=signum,
            hint=f"continue with: bptrain train --resume {self.out}" if self.out else None,
        )

    def finish(self, state: TrainState) -> dict[str, Any]:
        """Test the final (or best-validation) weights, save the final checkpoint, summarize."""
        weights, result = self._test(state)
        if self.stop_requested():  # a signal during the test: the last epoch's save stands
            self._stop(state)
        summary = self._summary(state, weights, result)
        self.save(state, metrics=summary, weights=weights, complete=True)
        where = f"checkpoint {self.out}" if self.out else "dry run: nothing saved"
        log.info(f"test accuracy {result.accuracy:.2%} (loss {result.loss:.4f}); {where}")
        if self.board is not None:
            self.board.summary(summary)
        self.hooks.emit(summary)
        check_target(result.accuracy, self.request.target_accuracy, "test")
        return summary

    def _test(self, state: TrainState) -> tuple[str, Any]:
        """Which weights the summary reports ("best", "ema" or "last"), and their test result."""
        r, cfg = self.run, self.run.config
        use_best = cfg.train.restore_best and state.best_params is not None
        last = {k: v.copy() for k, v in r.network.arrays.items()}
        # The best weights are the averaged ones of that epoch when there is an average.
        weights = "best" if use_best else "ema" if state.ema is not None else "last"
        if use_best:
            r.network.assign(state.best_params)  # type: ignore[arg-type]
        elif state.ema is not None:
            r.network.assign(state.ema.arrays)
        result = evaluate(r.network, *r.test, r.dataset.num_classes, cfg.train.eval_batch_size)
        r.network.assign(last)  # the checkpoint keeps the last weights, for --resume
        return weights, result

    def _summary(self, state: TrainState, weights: str, result: Any) -> dict[str, Any]:
        summary = {
            "event": "summary",
            "test_loss": result.loss,
            "test_accuracy": result.accuracy,
            "best_val_accuracy": state.best_val_accuracy,
            "epochs": state.epoch,
            "seconds": sum(record["seconds"] for record in state.history),
            "wall_seconds": self.clock(),
            "seed": self.run.seed,
            "checkpoint": str(self.out) if self.out else None,
            "weights": weights,
        }
        target = self.request.target_accuracy
        if target is not None:
            summary["seconds_to_target"] = seconds_to_target(state.history, target)
        if self.request.dry_run:
            summary["dry_run"] = True
        if self.run.init_from is not None:
            summary["init_from"] = dict(self.run.init_from)
        return summary
