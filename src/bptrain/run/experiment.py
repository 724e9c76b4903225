"""A run's life: prepare, resume, checkpoint schedule, best weights, interrupt, finish.

Also the evaluation of a checkpoint and the gradient check of a config. Nothing here writes to
stdout or picks an exit code: records go to `Hooks.emit`, human lines to the "bptrain" logger,
and failures are raised as the errors of `errors.py` (the console maps them to exit codes).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..accel import kernels
from ..config import Config, LoadedConfig, load_config, parse_override
from ..data import augment
from ..engine.averaging import WeightAverage
from ..engine.network import Network
from ..engine.optimizers import OPTIMIZERS, Optimizer
from ..engine.schedules import SCHEDULES, Schedule
from ..engine.train import Arrays, FitHooks, FitOptions, TrainState, evaluate, fit
from ..errors import (
    CheckFailed,
    CheckpointError,
    ConfigError,
    Interrupted,
    OutputError,
    StdoutClosed,
)
from . import checkpoint, outfile
from .checkpoint import Checkpoint, RunInfo
from .interrupts import INTERRUPTS

log = logging.getLogger("bptrain.run")


@dataclass(frozen=True)
class DataOptions:
    """Where the data is: the command line's folder and mirrors come before the config's."""

    data_dir: str | None = None
    mirrors: tuple[str, ...] = ()
    offline: bool | None = None  # None: ask BPTRAIN_OFFLINE


@dataclass
class Hooks:
    """How a run reports: records to `emit`, a progress callback per run, stdin for '-'."""

    emit: Callable[[dict[str, Any]], None]
    progress: Callable[[int], Any] = lambda epochs: None
    read_stdin: Callable[[], str] = lambda: ""


def draw_seed() -> int:
    """A fresh seed for runs whose config says `seed: null`; it is logged and recorded."""
    return secrets.randbelow(2**31)


def config_of(
    name: str | None,
    overrides: Sequence[str] = (),
    *,
    read_stdin: Callable[[], str] = lambda: "",
    raw: dict[str, Any] | None = None,
) -> LoadedConfig:
    """A validated config from a file, '-', a preset, or a checkpoint's stored `raw` config."""
    from .parts import PARTS  # the registries a config names (imports the whole engine)

    return load_config(name, tuple(overrides), parts=PARTS, stdin_text=read_stdin, raw=raw)


def load_dataset(config: Config, data: DataOptions = DataOptions(), **extra: Any) -> Any:
    """The config's dataset; the command line's folder and mirrors come before the config's."""
    from .. import data as data_layer

    return data_layer.load(
        config.data.dataset,
        data.data_dir if data.data_dir is not None else config.data.dir,
        mirrors=[*data.mirrors, *config.data.mirrors],
        offline=data.offline,
        quiet=not log.isEnabledFor(logging.INFO),
        **extra,
    )


def with_stored_folder(data: DataOptions, config: Config, ckpt: Checkpoint) -> DataOptions:
    """Look for the data where the run trained, unless told otherwise (load() still verifies)."""
    folder = ckpt.info.folder
    if data.data_dir is None and config.data.dir is None and folder and Path(folder).is_dir():
        return replace(data, data_dir=folder)
    return data


@dataclass
class Run:
    """Everything a training run works with."""

    config: Config
    seed: int
    rng: np.random.Generator
    dataset: Any
    train_rows: np.ndarray  # rows of dataset.x_train that are trained on
    val: Arrays
    test: Arrays
    network: Network
    optimizer: Optimizer
    schedule: Schedule | None
    state: TrainState = field(default_factory=TrainState)
    name: str | None = None  # the preset or config file's name
    augmenter: augment.Augmenter | None = None  # data.augment's transforms for this dataset

    @property
    def all_train(self) -> Arrays:
        """The loaded training arrays (validation rows included; see train_rows)."""
        return self.dataset.x_train, self.dataset.t_train

    @property
    def info(self) -> RunInfo:
        """What the checkpoint records: enough to rebuild the model and its data from the file."""
        return RunInfo(
            config=self.config.to_dict() | {"seed": self.seed},
            seed=self.seed,
            input_shape=tuple(self.network.input_shape),
            num_classes=int(self.dataset.num_classes),
            class_names=tuple(self.dataset.class_names),
            dataset=self.dataset.name,
            checksums=dict(self.dataset.checksums),
            folder=str(self.dataset.folder),
            name=self.name,
        )


def split_rows(config: Config, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows of the training file, the first draws of the run's generator."""
    from ..data import split_indices

    if config.data.validation >= n:
        raise ConfigError(
            f"must be smaller than the training set ({n} samples), got {config.data.validation}",
            path="data.validation",
        )
    return split_indices(n, config.data.validation, rng, limit_train=config.data.limit_train)


def prepare(config: Config, seed: int, dataset: Any) -> Run:
    """Split, build and initialize in a fixed order from one generator seeded with `seed`.

    The order (validation split, then weights, then shuffling and dropout while training) is
    what makes a resumed or re-evaluated run see exactly the data and weights of the original.
    """
    rng = np.random.default_rng(seed)
    # Training reads its rows straight from the loaded array: no second copy of the images.
    rows, val_rows = split_rows(config, dataset.x_train.shape[0], rng)
    network = Network.from_specs(
        config.model.layers,
        dataset.x_train.shape[1:],
        config.model.loss,
        rng=rng,
        num_classes=dataset.num_classes,
    )
    optimizer = OPTIMIZERS.build(config.optimizer, "optimizer")
    schedule = (
        SCHEDULES.build(config.train.schedule, "train.schedule") if config.train.schedule else None
    )
    val = (dataset.x_train[val_rows], dataset.t_train[val_rows])
    test = (dataset.x_test, dataset.t_test)
    run = Run(config, seed, rng, dataset, rows, val, test, network, optimizer, schedule)
    run.augmenter = augment.build(config.data.augment, dataset.name)
    if config.train.ema is not None:
        run.state.ema = WeightAverage(config.train.ema, network.arrays)
    return run


def check_fits(ckpt: Checkpoint, dataset: Any) -> None:
    """The data must have the image shape and classes the checkpoint's network was built for."""
    info = ckpt.info
    x = dataset.x_test if dataset.x_test.size else dataset.x_train
    shape, classes = tuple(x.shape[1:]), int(dataset.num_classes)
    # With only the test files loaded, an `idx` dataset counts the classes its test labels use.
    partial = dataset.x_train.shape[0] == 0
    fewer_ok = partial and classes <= info.num_classes
    if shape != info.input_shape or (classes != info.num_classes and not fewer_ok):
        raise CheckpointError(
            f"{ckpt.path} was trained on {_dims(info.input_shape)} images with "
            f"{info.num_classes} classes; {dataset.folder} has {_dims(shape)} images with "
            f"{classes} classes",
            hint="point --data-dir at the data it was trained on",
        )


def _dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def check_same_data(ckpt: Checkpoint, dataset: Any) -> bool:
    """True when the loaded files are the ones the checkpoint was trained on (as far as known)."""
    stored = ckpt.info.checksums
    return all(stored.get(name, sha) == sha for name, sha in dataset.checksums.items())


def resume(ckpt: Checkpoint, run: Run) -> None:
    """Load weights, optimizer, generator and loop state so training continues exactly."""
    if not check_same_data(ckpt, run.dataset):
        raise CheckpointError(
            f"checkpoint {ckpt.path} was trained on other {run.dataset.name} files than the ones "
            f"in {run.dataset.folder}",
            hint="point --data-dir at the original files",
        )
    train = run.config.train
    run.state = checkpoint.restore_training(
        ckpt, run.network, run.optimizer, run.rng, run.train_rows, train.batch_size, train.ema
    )
    run.name = ckpt.info.name


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS (and OpenMP) threads for the duration; None leaves them as they are."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=threads):
        previous = kernels.set_threads(threads)  # the compiled loops get the same budget
        counts = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        where = " (conv and dense products in pieces on the compiled loops' threads)"
        log.debug(
            f"BLAS threads: {', '.join(map(str, counts)) or 'no BLAS library found'}"
            + (where if kernels.products() is not None else "")
        )
        try:
            yield
        finally:
            kernels.set_threads(previous)


# ---------------------------------------------------------------------------------------------
# train


@dataclass(frozen=True)
class TrainRequest:
    """What `bptrain train` was asked to do."""

    config: str | None = None
    overrides: tuple[str, ...] = ()
    data: DataOptions = DataOptions()
    out: str | None = None
    overwrite: bool = False
    resume: str | None = None
    target_accuracy: float | None = None
    dry_run: bool = False


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
    _config_of_checkpoint(ckpt)  # the stored config alone must be sound: else exit 4
    loaded = config_of(request.resume, overrides, raw=ckpt.info.config)  # --set errors: exit 2
    return Plan(loaded, ckpt.info.seed, ckpt)


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


def check_stack(loaded: LoadedConfig, data: DataOptions) -> None:
    """Build the config's network for its data's shape: a layer that cannot take its input
    (conv2d after flatten) fails here, naming the layer, not after the data has loaded."""
    from ..data import DATASETS

    cfg = loaded.config
    if DATASETS[cfg.data.dataset].image_shape is None and (data.data_dir or cfg.data.dir) is None:
        return  # an `idx` folder's shape is only known from its files; train checks it
    input_shape, classes = data_shape(cfg, data)
    try:
        Network.from_specs(cfg.model.layers, input_shape, cfg.model.loss, num_classes=classes)
    except ConfigError as error:
        raise loaded.locate(error) from None


@contextlib.contextmanager
def _checkpoint_path(request: TrainRequest, loaded: LoadedConfig) -> Iterator[Path | None]:
    """The checkpoint's path, reserved and locked for the run (None for a dry run)."""
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
    with outfile.locked(path):
        yield path


def train(request: TrainRequest, hooks: Hooks, parallel: Any = None) -> dict[str, Any]:
    """Train as requested; returns the summary record (also emitted).

    With `parallel` (parallel.Parallel, under mpiexec), rank 0 plans, reserves the checkpoint,
    loads (or downloads) the data and builds the run first; the other ranks wait for its
    verified folder and seed (or its failure), then do the same offline and save nothing.
    """
    started = time.perf_counter()  # the run's clock includes planning and loading the data
    root = parallel is None or parallel.is_root
    shared: tuple[str | None, int | None] = (None, None)
    if not root:
        shared = parallel.share_start()
        request = replace(request, data=replace(request.data, data_dir=shared[0], offline=True))
    resolved = plan(request, hooks.read_stdin)
    if shared[1] is not None:
        resolved.seed = shared[1]  # a drawn seed is rank 0's: every rank draws the same batches
    loaded, ckpt = resolved.loaded, resolved.ckpt
    if loaded.config.seed is None:
        log.info(f"no seed in the config; drew seed {resolved.seed} (recorded in the checkpoint)")
    # The checkpoint path is checked and locked before minutes of loading, not after.
    reserve = _checkpoint_path(request, loaded) if root else contextlib.nullcontext(None)
    with reserve as out:
        data = with_stored_folder(request.data, loaded.config, ckpt) if ckpt else request.data
        dataset = load_dataset(loaded.config, data)
        if ckpt is not None:
            check_fits(ckpt, dataset)
        try:
            run = prepare(loaded.config, resolved.seed, dataset)
        except ConfigError as error:
            raise loaded.locate(error) from None
        run.name = loaded.name
        if ckpt is not None:
            resume(ckpt, run)
        if request.dry_run:
            _shrink_for_dry_run(run)
        if parallel is not None and root:  # every check passed here: the others may start
            parallel.share_start(str(dataset.folder), resolved.seed)
        _log_start(run, loaded, ckpt, out)
        return Training(run, out, hooks, request, parallel, started).execute()


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
        log.info(epoch_line(record, self.epochs))
        try:
            self.hooks.emit({"event": "epoch", **record})
        except (StdoutClosed, OutputError) as error:
            self.output_error = error

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.close()

    def execute(self) -> dict[str, Any]:
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
        if self.stop_requested():  # a signal during the test: the last epoch's save stands
            self._stop(state)
        summary = {
            "event": "summary",
            "test_loss": result.loss,
            "test_accuracy": result.accuracy,
            "best_val_accuracy": state.best_val_accuracy,
            "epochs": state.epoch,
            "seconds": sum(record["seconds"] for record in state.history),
            "wall_seconds": self.clock(),
            "seed": r.seed,
            "checkpoint": str(self.out) if self.out else None,
            "weights": weights,
        }
        target = self.request.target_accuracy
        if target is not None:
            summary["seconds_to_target"] = seconds_to_target(state.history, target)
        if self.request.dry_run:
            summary["dry_run"] = True
        self.save(state, metrics=summary, weights=weights, complete=True)
        where = f"checkpoint {self.out}" if self.out else "dry run: nothing saved"
        log.info(f"test accuracy {result.accuracy:.2%} (loss {result.loss:.4f}); {where}")
        self.hooks.emit(summary)
        check_target(result.accuracy, self.request.target_accuracy, "test")
        return summary


def seconds_to_target(history: Sequence[dict[str, Any]], target: float) -> float | None:
    """The run's clock when validation accuracy first reached `target` (None: it never did)."""
    for record in history:
        accuracy = record.get("val_accuracy")
        if accuracy is not None and accuracy >= target:
            return record.get("wall_seconds")
    return None


def check_target(accuracy: float, target: float | None, split: str) -> None:
    if target is not None and accuracy < target:
        raise CheckFailed(f"{split} accuracy {accuracy:.4f} is below the target {target:.4f}")


# ---------------------------------------------------------------------------------------------
# eval


def _config_of_checkpoint(ckpt: Checkpoint) -> Config:
    try:
        return config_of(str(ckpt.path), raw=ckpt.info.config).config
    except ConfigError as error:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its stored config is unusable ({error})"
        ) from None


@dataclass
class Model:
    """A trained network rebuilt from its checkpoint alone, with the weights chosen."""

    ckpt: Checkpoint
    config: Config
    network: Network
    weights: str  # "last", "best" or "ema"

    @property
    def info(self) -> RunInfo:
        return self.ckpt.info


def load_model(path: str, weights: str = "auto") -> Model:
    """The checkpoint's network with its last, best or (auto) summary weights."""
    ckpt = checkpoint.load(path)
    config, info = _config_of_checkpoint(ckpt), ckpt.info
    network = Network.from_specs(
        config.model.layers, info.input_shape, config.model.loss, num_classes=info.num_classes
    )
    chosen = ckpt.weights if weights == "auto" else weights
    checkpoint.restore_network(network, ckpt, chosen)
    if not ckpt.complete:
        log.warning(
            f"{path} is the checkpoint of an unfinished run ({ckpt.epochs} of "
            f"{config.train.epochs} epochs); continue it with: bptrain train --resume {path}"
        )
    return Model(ckpt, config, network, chosen)


def eval_record(model: Model, split: str, result: Any) -> dict[str, Any]:
    """The `eval` record of a result, with the per-class table logged beside it."""
    info = model.info
    _log_per_class(info.class_names, result.per_class_accuracy, result.confusion.sum(axis=1))
    return {
        "event": "eval",
        "split": split,
        "n": result.n,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "class_names": list(info.class_names),
        "per_class_accuracy": result.per_class_accuracy,
        "confusion_matrix": result.confusion.tolist(),
        "checkpoint": str(model.ckpt.path),
        "weights": model.weights,
        "epochs": model.ckpt.epochs,
        "complete": model.ckpt.complete,
    }


def evaluate_checkpoint(
    path: str,
    *,
    split: str = "test",
    weights: str = "auto",
    data: DataOptions = DataOptions(),
    target_accuracy: float | None = None,
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Score a checkpoint on one split; the model is rebuilt from the checkpoint alone."""
    model = load_model(path, weights)
    ckpt, config = model.ckpt, model.config
    # The test split needs only the two test files: no training set in memory.
    splits = ("test",) if split == "test" else ("train", "test")
    dataset = load_dataset(config, with_stored_folder(data, config, ckpt), splits=splits)
    check_fits(ckpt, dataset)
    if not check_same_data(ckpt, dataset):
        log.warning(f"{path} was trained on other {dataset.name} files than these")
    x, t = _split_arrays(config, model.info.seed, dataset, split)
    result = evaluate(model.network, x, t, model.info.num_classes, config.train.eval_batch_size)
    record = eval_record(model, split, result)
    record["checkpoint"] = path
    emit(record)
    check_target(result.accuracy, target_accuracy, split)
    return record


def _split_arrays(config: Config, seed: int, dataset: Any, split: str) -> Arrays:
    """The rows of one split, drawn exactly as training drew them."""
    if split == "test":
        return dataset.x_test, dataset.t_test
    rows, val_rows = split_rows(config, dataset.x_train.shape[0], np.random.default_rng(seed))
    chosen = val_rows if split == "validation" else rows
    if len(chosen) == 0:
        raise ConfigError(
            f"the {split} split is empty (data.validation is 0)", hint="evaluate another --split"
        )
    return dataset.x_train[chosen], dataset.t_train[chosen]


def _log_per_class(names: Sequence[str], accuracies: Sequence[float | None], counts: Any) -> None:
    width = max(len(name) for name in names)
    for name, accuracy, n in zip(names, accuracies, counts, strict=True):
        shown = f"{accuracy:.2%}" if accuracy is not None else "-"
        log.info(f"  {name:<{width}}  {shown:>7}  of {n}")


# ---------------------------------------------------------------------------------------------
# gradcheck


def gradcheck_config(
    name: str | None,
    overrides: Sequence[str] = (),
    *,
    tolerance: float = 1e-6,
    batch_size: int = 4,
    coords: int = 30,
    data: DataOptions = DataOptions(),
    read_stdin: Callable[[], str] = lambda: "",
    emit: Callable[[dict[str, Any]], None],
) -> Any:
    """Backprop against central differences for a config's network, in float64 (see gradcheck)."""
    from ..engine import gradcheck
    from ..engine.layers import BatchNorm

    loaded = config_of(name, overrides, read_stdin=read_stdin)
    cfg = loaded.config
    input_shape, classes = data_shape(cfg, data)
    rng = np.random.default_rng(cfg.seed if cfg.seed is not None else 0)
    try:
        network = Network.from_specs(
            cfg.model.layers, input_shape, cfg.model.loss, rng=rng, dtype=np.float64,
            num_classes=classes,
        )  # fmt: skip
    except ConfigError as error:
        raise loaded.locate(error) from None
    if batch_size < 2 and any(isinstance(layer, BatchNorm) for layer in network.layers):
        raise ConfigError(
            "--batch-size 1 with batch_norm: a batch of one normalizes to zero and every "
            "gradient before it vanishes",
            hint="use --batch-size 2 or more (default 4)",
        )
    x = rng.random((batch_size, *input_shape))
    t = rng.integers(0, classes, batch_size)
    report = gradcheck.check_network(network, x, t, tolerance=tolerance, coords=coords, rng=rng)
    emit(report.to_record())
    _judge_gradcheck(report, network, tolerance)
    return report


def _judge_gradcheck(report: Any, network: Network, tolerance: float) -> None:
    for p in report.parameters:
        log.debug(
            f"{p.name:>8} {p.max_relative_error:.2e} at {p.worst_index} "
            f"({p.checked} checked, {p.skipped_kinks} skipped near kinks)"
        )
    if report.unchecked:
        raise CheckFailed(
            f"gradient check inconclusive: no point of {', '.join(report.unchecked)} could be "
            "compared (every step flipped a ReLU or max-pool kink)",
            hint="try another --set seed=N or a larger --coords",
        )
    if not report.ok:
        worst = report.worst
        layer = worst.name.split(".")[0]
        where = f"layer {layer} ({network.layer_name(int(layer))})" if layer.isdigit() else "input"
        raise CheckFailed(
            f"gradient check failed: {worst.name} of {where} has relative error "
            f"{worst.max_relative_error:.3g} > tolerance {tolerance:g} at index "
            f"{list(worst.worst_index)}",
            hint="its backward disagrees with its forward",
        )
    log.info(f"gradient check passed: max relative error {report.max_relative_error:.3g}")


def data_shape(cfg: Config, data: DataOptions) -> tuple[tuple[int, ...], int]:
    """Input shape and class count; known datasets need no files, `idx` reads its folder."""
    from ..data import DATASETS

    info = DATASETS[cfg.data.dataset]
    if info.image_shape is not None and info.num_classes is not None:
        return (1, *info.image_shape), info.num_classes
    dataset = load_dataset(
        cfg, replace(data, offline=True if data.offline is None else data.offline)
    )
    return tuple(dataset.x_train.shape[1:]), int(dataset.num_classes)
