"""Restoring a loaded checkpoint into live objects: a network's weights, or a whole run.

Every stored array is checked against the live one (keys, shapes, dtypes, finite values)
before anything is copied, so a checkpoint of another config fails whole, naming what differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.averaging import WeightAverage
from ..engine.network import Network
from ..engine.optimizers import Optimizer
from ..engine.train import TrainState, steps_per_epoch
from ..errors import CheckpointError
from .checkpoint import Checkpoint, state_from_dict


def _copy_into(
    targets: dict[str, np.ndarray], stored: dict[str, np.ndarray], what: str, path: Path
) -> None:
    """Copy stored arrays into the live ones after checking keys, shapes and dtypes strictly."""
    if set(stored) != set(targets):
        missing, extra = sorted(set(targets) - set(stored)), sorted(set(stored) - set(targets))
        raise CheckpointError(
            f"checkpoint {path}: {what} do not match the model (missing {missing or 'none'}, "
            f"unexpected {extra or 'none'})",
            hint="was it written for another config?",
        )
    for key, target in targets.items():
        value = stored[key]
        if value.shape != target.shape or value.dtype != target.dtype:
            raise CheckpointError(
                f"checkpoint {path}: {what} {key} is {value.dtype}{list(value.shape)}, the model "
                f"needs {target.dtype}{list(target.shape)}",
                hint="was it written for another config?",
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: {what} {key} holds non-finite values")
    for key, target in targets.items():
        target[...] = stored[key]


# Weight sets besides the last ones: (array group, what it is, how to get one).
_WEIGHT_SETS = {
    "best": ("best", "best-validation", "train with data.validation > 0, or use --weights last"),
    "ema": ("ema", "averaged (EMA)", "train with train.ema set, or use --weights last"),
}


def stored_arrays(ckpt: Checkpoint, weights: str = "last") -> dict[str, np.ndarray]:
    """The last, best-validation or averaged parameters and buffers of a checkpoint.

    The averaged ("ema") set holds the float buffers; any other buffer comes from the last.
    """
    if weights not in _WEIGHT_SETS:
        return {**ckpt.group("param"), **ckpt.group("buffer")}
    group, what, hint = _WEIGHT_SETS[weights]
    chosen = ckpt.group(group)
    if not chosen:
        raise CheckpointError(f"checkpoint {ckpt.path} holds no {what} weights", hint=hint)
    return {**ckpt.group("buffer"), **chosen} if weights == "ema" else dict(chosen)


def restore_network(network: Network, ckpt: Checkpoint, weights: str = "last") -> None:
    """Load the last, best-validation or averaged parameters and buffers into a network."""
    if weights in _WEIGHT_SETS:
        chosen = stored_arrays(ckpt, weights)
        params = {k: v for k, v in chosen.items() if k in network.params}
        buffers = {k: v for k, v in chosen.items() if k not in network.params}
    else:
        params, buffers = ckpt.group("param"), ckpt.group("buffer")
    _copy_into(network.params, params, "parameters", ckpt.path)
    _copy_into(network.buffers, buffers, "buffers", ckpt.path)


def restore_training(
    ckpt: Checkpoint,
    network: Network,
    optimizer: Optimizer,
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
    batch_size: int | None = None,
    ema_decay: float | None = None,
) -> TrainState:
    """Everything needed to continue exactly: weights, optimizer, generator and loop state.

    With the training `rows` and `batch_size`, the stored sample order and step are checked
    against them (a resumed run must fit the data it resumes on). With `ema_decay` the
    averaged weights continue from the stored ones; a run that had none starts its average
    from the weights it resumes with.
    """
    restore_network(network, ckpt)
    _restore_optimizer(ckpt, optimizer, network)
    try:
        rng.bit_generator.state = ckpt.meta["rng_state"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its random generator state is unusable ({error})"
        ) from None
    state = state_from_dict(ckpt.meta["train_state"], ckpt.history)
    state.order = ckpt.group("state").get("order")
    if rows is not None and batch_size is not None:
        _check_position(ckpt, state, rows, batch_size)
    best = ckpt.group("best")
    state.best_params = {k: v.copy() for k, v in best.items()} if best else None
    if ema_decay is not None:
        state.ema = WeightAverage(ema_decay, network.arrays)
        stored = ckpt.group("ema")
        if stored:
            _copy_into(state.ema.arrays, stored, "averaged weights", ckpt.path)
            state.ema.updates = int(ckpt.meta["train_state"].get("ema_updates") or 0)
    return state


def _restore_optimizer(ckpt: Checkpoint, optimizer: Optimizer, network: Network) -> None:
    """Each stored slot must be `<param>.<slot>` of this network and optimizer, shaped alike."""
    stored = ckpt.group("optim")
    steps = stored.get("steps")
    good_steps = steps is not None and steps.shape == () and steps.dtype.kind in "iu"
    problems = [] if good_steps and int(steps) >= 0 else ["steps"]
    for key, value in stored.items():
        if key == "steps":
            continue
        name, _, slot = key.rpartition(".")
        param = network.params.get(name)
        if param is None or slot not in optimizer.slots:
            problems.append(key)
        elif value.shape != param.shape or value.dtype != param.dtype:
            problems.append(f"{key} ({value.dtype}{list(value.shape)})")
    if problems:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its optimizer state does not fit {optimizer!r} "
            f"(unexpected or misshaped: {', '.join(problems)})",
            hint="was it written for another config?",
        )
    optimizer.load_state_dict(stored)


def _check_position(ckpt: Checkpoint, state: TrainState, rows: np.ndarray, batch_size: int) -> None:
    """The stored step and sample order must fit the training rows they continue on."""
    steps = steps_per_epoch(len(rows), batch_size)
    order = state.order
    fits = state.step <= steps and (state.step == 0 or order is not None)
    if order is not None:
        fits = fits and order.shape[0] == len(rows) and bool(np.isin(order, rows).all())
    if not fits:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: its position (step {state.step} of {steps}) and sample "
            "order do not fit this training set",
            hint="was it written for another config or data?",
        )
