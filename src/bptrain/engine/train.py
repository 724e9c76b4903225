"""The seed's four learning steps as a library loop: fit() and evaluate() return data."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, DivergedError
from ..functional import labels_of
from .averaging import WeightAverage
from .network import Network
from .optimizers import Optimizer
from .schedules import Schedule

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class TrainState:
    """Everything that changes while training and is needed to resume exactly mid-run."""

    epoch: int = 0  # epochs completed
    step: int = 0  # mini-batches completed in the current epoch
    order: np.ndarray | None = None  # this epoch's shuffled sample order
    loss_sum: float = 0.0  # running sums over the current epoch
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    best_params: dict[str, np.ndarray] | None = None
    stale_epochs: int = 0  # epochs since validation accuracy last improved
    stopped_early: bool = False
    interrupted: bool = False
    ema: WeightAverage | None = None  # the averaged weights, when train.ema is set
    wall_seconds: float = 0.0  # the run's clock (every session, loading included) at the last save


@dataclass
class EvalResult:
    """Loss, accuracy and the confusion matrix of a model on one split."""

    n: int
    loss: float
    accuracy: float
    confusion: np.ndarray  # (C, C): rows are true labels, columns predictions

    @property
    def per_class_accuracy(self) -> list[float | None]:
        totals = self.confusion.sum(axis=1)
        hits = np.diag(self.confusion)
        return [float(h / n) if n else None for h, n in zip(hits, totals, strict=True)]


def evaluate(
    network: Network, x: np.ndarray, t: np.ndarray, num_classes: int, batch_size: int = 1000
) -> EvalResult:
    """Inference-mode loss, accuracy and confusion matrix over a whole split."""
    labels = labels_of(t)
    loss, predictions = network.evaluate(x, t, batch_size)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    accuracy = float(np.mean(predictions == labels)) if len(labels) else 0.0
    return EvalResult(n=len(labels), loss=loss, accuracy=accuracy, confusion=confusion)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Mini-batches per epoch: every sample is seen once, the last batch may be smaller."""
    return math.ceil(n / batch_size)


def _nonfinite_parameter(network: Network) -> str | None:
    """The first parameter or buffer holding a NaN or infinity, named with its layer."""
    for name, value in {**network.params, **network.buffers}.items():
        if not math.isfinite(value.sum()):  # one reduction per array: NaN/inf poison the sum
            index = int(name.split(".")[0])
            return f"{name} of layer {index} ({network.layer_name(index)})"
    return None


def _diverged(
    network: Network, xb: np.ndarray, tb: np.ndarray, state: TrainState, optimizer: Optimizer
) -> DivergedError:
    """Name where the first non-finite value came from.

    Gradients are not scanned every step: a non-finite gradient (or an update that overflows)
    makes its parameter non-finite, and any non-finite weight makes the next loss non-finite
    (NaN and infinity survive every layer). So a non-finite loss is checked first against the
    parameters, then the batch is replayed layer by layer.
    """
    parameter = _nonfinite_parameter(network)
    if parameter is not None:
        where = f"{parameter}, made non-finite by the previous update (its gradient or the step)"
    else:
        where = network.find_nonfinite(xb, tb)
    return DivergedError(
        f"training diverged at epoch {state.epoch + 1}, step {state.step + 1}: "
        f"a non-finite value first appeared in {where}",
        hint=f"lower optimizer.lr (now {optimizer.lr:g}), e.g. --set optimizer.lr="
        f"{optimizer.lr / 10:g}",
    )


# Step 2 of the seed as a function: (network, xb, tb) -> (mean loss, correct answers), with every
# gradient in network.grads. Data-parallel training (scale/parallel.py) passes its own, which
# backpropagates this rank's slice of the batch and sums the results over the ranks.
Gradient = Callable[[Network, np.ndarray, np.ndarray], tuple[float, int]]


def backprop(network: Network, xb: np.ndarray, tb: np.ndarray) -> tuple[float, int]:
    """The seed's step 2 on one mini-batch: forward, loss, backward; (loss, hits)."""
    loss, scores = network.gradient(xb, tb)
    return loss, int(np.count_nonzero(scores.argmax(axis=1) == labels_of(tb)))


@dataclass(frozen=True)
class FitOptions:
    """How fit() trains, beside the network, the optimizer and the data.

    `val` is evaluated after every epoch; `rows` trains on those rows of the training arrays
    only (a validation split held out of them costs no copy); `augment` (data/augment.py)
    transforms each gathered batch, drawing from fit's generator.
    """

    epochs: int
    batch_size: int
    val: Arrays | None = None
    rows: np.ndarray | None = None
    schedule: Schedule | None = None
    early_stopping: int | None = None
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None


@dataclass(frozen=True)
class FitHooks:
    """What fit() calls back, each optional: progress after a batch, the record after an
    epoch, a stop test polled between steps, the gradient step (see Gradient), and
    `epoch_end`, run on the network after an epoch's last step, before validation."""

    on_batch: Callable[[TrainState, int, float], None] | None = None
    on_epoch: Callable[[TrainState, dict[str, Any]], None] | None = None
    stop_requested: Callable[[], bool] | None = None
    gradient: Gradient = backprop
    epoch_end: Callable[[Network], None] | None = None


def train_step(
    network: Network,
    optimizer: Optimizer,
    xb: np.ndarray,
    tb: np.ndarray,
    state: TrainState,
    gradient: Gradient = backprop,
) -> tuple[float, int]:
    """Steps 2 and 3 of the seed on one mini-batch: gradients by backprop, then the update.

    Non-finite values are caught here, so callers may silence NumPy's overflow warnings (fit
    does). A non-finite gradient poisons its parameter, which poisons the next loss, so the
    loss is all that needs checking per step (fit checks the parameters after each epoch).
    """
    loss, correct = gradient(network, xb, tb)
    if not math.isfinite(loss):
        raise _diverged(network, xb, tb, state, optimizer)
    optimizer.update(network.params, network.grads)
    if state.ema is not None:
        state.ema.update(network.arrays)
    return loss, correct


def fit(
    network: Network,
    optimizer: Optimizer,
    train: Arrays,
    options: FitOptions,
    *,
    rng: np.random.Generator,
    state: TrainState | None = None,
    hooks: FitHooks | None = None,
) -> TrainState:
    """Mini-batch training: shuffle (step 1), backprop (2), update (3), repeat (4).

    Pass a `state` from an earlier call (or a checkpoint) to continue exactly where it stopped.
    When `hooks.stop_requested` returns True the state is returned with `interrupted` set, at
    a clean step boundary. With an EMA in `state.ema`, validation and the best weights are the
    averaged ones.
    """
    hooks = hooks if hooks is not None else FitHooks()
    n = _training_size(train, options)
    steps = steps_per_epoch(n, options.batch_size)
    state = state if state is not None else TrainState()
    state.interrupted = False
    while state.epoch < options.epochs and not state.stopped_early:
        if state.order is None:  # the same draws either way: permuting rows = rows[perm(n)]
            rows = options.rows
            state.order = rng.permutation(n) if rows is None else rng.permutation(rows)
        if not _epoch_steps(network, optimizer, train, options, state, steps, rng, hooks):
            state.interrupted = True
            return state
        if hooks.epoch_end is not None:
            hooks.epoch_end(network)
        record = _finish_epoch(network, optimizer, state, options.val, options.early_stopping)
        if hooks.on_epoch is not None:
            hooks.on_epoch(state, record)
    return state


def _training_size(train: Arrays, options: FitOptions) -> int:
    """How many samples an epoch draws from (all of `train`, or `options.rows`), checked."""
    n = train[0].shape[0] if options.rows is None else len(options.rows)
    if n == 0:
        raise ConfigError("the training set is empty", path="data")
    if options.batch_size < 1:
        raise ConfigError(f"must be >= 1, got {options.batch_size}", path="train.batch_size")
    return n


def _epoch_steps(
    network: Network,
    optimizer: Optimizer,
    train: Arrays,
    options: FitOptions,
    state: TrainState,
    steps: int,
    rng: np.random.Generator,
    hooks: FitHooks,
) -> bool:
    """The epoch's remaining steps (1-3 of the four); False when a stop was requested."""
    started = time.perf_counter()
    # One errstate per epoch, not per step: train_step catches non-finite values itself.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while state.step < steps:
            if hooks.stop_requested is not None and hooks.stop_requested():
                state.seconds += time.perf_counter() - started
                return False
            _step(network, optimizer, train, options, state, steps, rng, hooks)
    state.seconds += time.perf_counter() - started
    return True


def _step(
    network: Network,
    optimizer: Optimizer,
    train: Arrays,
    options: FitOptions,
    state: TrainState,
    steps: int,
    rng: np.random.Generator,
    hooks: FitHooks,
) -> None:
    """One mini-batch of the epoch: the learning rate, the batch, the step, the running sums."""
    if options.schedule is not None:
        progress = state.epoch + state.step / steps
        optimizer.lr = optimizer.base_lr * options.schedule.factor(progress, options.epochs)
    (x, t), size = train, options.batch_size
    idx = state.order[state.step * size : (state.step + 1) * size]  # type: ignore[index]
    xb = x[idx] if options.augment is None else options.augment(x[idx], rng)
    loss, correct = train_step(network, optimizer, xb, t[idx], state, hooks.gradient)
    state.step += 1
    state.loss_sum += loss * len(idx)
    state.correct += correct
    state.seen += len(idx)
    if hooks.on_batch is not None:
        hooks.on_batch(state, steps, loss)


def _finish_epoch(
    network: Network,
    optimizer: Optimizer,
    state: TrainState,
    val: Arrays | None,
    early_stopping: int | None,
) -> dict[str, Any]:
    """Close the epoch: validation, best-model bookkeeping, the history record, reset sums."""
    parameter = _nonfinite_parameter(network)
    if parameter is not None:  # the epoch's last update; every earlier one met a finite loss
        raise DivergedError(
            f"training diverged at epoch {state.epoch + 1}, step {state.step}: "
            f"the last update made {parameter} non-finite",
            hint=f"lower optimizer.lr (now {optimizer.lr:g})",
        )
    with evaluated_weights(network, state.ema):
        val_loss, val_accuracy = _validate(network, optimizer, state, val, early_stopping)
    record = {
        "epoch": state.epoch,
        "train_loss": state.loss_sum / state.seen,
        "train_accuracy": state.correct / state.seen,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "lr": optimizer.lr,
        "seconds": state.seconds,
        "samples_per_second": state.seen / state.seconds if state.seconds > 0 else None,
    }
    state.history.append(record)
    state.step, state.order, state.loss_sum, state.correct, state.seen = 0, None, 0.0, 0, 0
    state.seconds = 0.0
    return record


@contextlib.contextmanager
def evaluated_weights(network: Network, ema: WeightAverage | None) -> Iterator[None]:
    """The weights a model is judged by: the moving average while inside, when there is one.

    The raw weights, which training continues from, are put back on the way out.
    """
    if ema is None:
        yield
        return
    raw = {k: v.copy() for k, v in network.arrays.items()}
    network.assign(ema.arrays)
    try:
        yield
    finally:
        network.assign(raw)


def _validate(
    network: Network,
    optimizer: Optimizer,
    state: TrainState,
    val: Arrays | None,
    early_stopping: int | None,
) -> tuple[float | None, float | None]:
    """Validation loss and accuracy; counts the epoch and keeps the best weights."""
    val_loss = val_accuracy = None
    if val is not None and val[0].shape[0] > 0:
        val_loss, predictions = network.evaluate(*val)
        val_accuracy = float(np.mean(predictions == labels_of(val[1])))
        if not math.isfinite(val_loss):  # finite weights whose outputs overflow: diverged too
            raise DivergedError(
                f"training diverged at epoch {state.epoch + 1}: the validation loss is "
                f"{val_loss} (the outputs overflow although every weight is finite)",
                hint=f"lower optimizer.lr (now {optimizer.lr:g}), e.g. --set optimizer.lr="
                f"{optimizer.lr / 10:g}",
            )
    state.epoch += 1
    if val_accuracy is not None:
        if state.best_val_accuracy is None or val_accuracy > state.best_val_accuracy:
            state.best_val_accuracy, state.best_epoch, state.stale_epochs = (
                val_accuracy,
                state.epoch,
                0,
            )
            state.best_params = {k: v.copy() for k, v in network.arrays.items()}
        else:
            state.stale_epochs += 1
            if early_stopping is not None and state.stale_epochs >= early_stopping:
                state.stopped_early = True
    return val_loss, val_accuracy
