"""Checkpoint save and load as a round trip, over random networks, optimizers and loop states.

Whatever a run can hold (float32 or float64 weights down to subnormals and -0.0, any optimizer's
slots, BatchNorm buffers, best and averaged weights, a mid-epoch sample order, unicode class
names, any history) must come back from the file bit for bit, and put back into fresh objects
by restore_training as the original had it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bptrain.engine.averaging import WeightAverage
from bptrain.engine.network import Network
from bptrain.engine.optimizers import OPTIMIZERS, Optimizer
from bptrain.engine.train import TrainState
from bptrain.run import checkpoint, restore

FRACTION = st.floats(0, 1)
NON_NEGATIVE = st.floats(0, 1e12)
TEXT = st.text(max_size=12)


@st.composite
def specs(draw):
    """A small stack: hidden affine layers, each maybe batch-normalized, then the classes."""
    layers = []
    for _ in range(draw(st.integers(0, 2))):
        layers.append({"type": "affine", "units": draw(st.integers(1, 6))})
        if draw(st.booleans()):
            layers.append({"type": "batch_norm"})
        layers.append({"type": draw(st.sampled_from(["relu", "sigmoid", "tanh"]))})
    classes = draw(st.integers(2, 4))
    return [*layers, {"type": "affine", "units": classes}], classes


def weights(draw, like: np.ndarray) -> np.ndarray:
    """Any finite values of `like`'s dtype and shape (subnormals and -0.0 included)."""
    width = 32 if like.dtype == np.float32 else 64
    finite = st.floats(allow_nan=False, allow_infinity=False, width=width)
    return draw(hnp.arrays(like.dtype, like.shape, elements=finite))


def history(draw, epochs: int) -> list[dict]:
    return [
        {
            "epoch": n,
            "train_loss": draw(st.none() | NON_NEGATIVE),
            "train_accuracy": draw(st.none() | FRACTION),
            "val_loss": draw(st.none() | NON_NEGATIVE),
            "val_accuracy": draw(st.none() | FRACTION),
            "lr": draw(st.none() | st.floats(1e-300, 10)),
            "seconds": draw(NON_NEGATIVE),
            "samples_per_second": draw(st.none() | NON_NEGATIVE),
            "wall_seconds": draw(NON_NEGATIVE),
        }
        for n in range(1, epochs + 1)
    ]


def loop_state(draw, network: Network, rows: int) -> TrainState:
    """A loop state validate_meta accepts: at an epoch boundary or mid-epoch, any history."""
    epoch = draw(st.integers(0, 3))
    state = TrainState(epoch=epoch, history=history(draw, epoch))
    state.step = draw(st.integers(0, 5))
    if state.step:  # mid-epoch: the shuffled order and the epoch's running counts travel
        state.order = np.array(draw(st.permutations(range(rows))), dtype=np.int64)
        state.seen = draw(st.integers(0, 10_000))
        state.correct = draw(st.integers(0, state.seen))
        state.loss_sum = draw(NON_NEGATIVE)
    state.seconds, state.wall_seconds = draw(NON_NEGATIVE), draw(NON_NEGATIVE)
    state.stale_epochs = draw(st.integers(0, epoch))
    state.stopped_early = draw(st.booleans())
    if epoch and draw(st.booleans()):
        state.best_epoch = draw(st.integers(1, epoch))
        state.best_val_accuracy = draw(FRACTION)
        state.best_params = {k: weights(draw, v) for k, v in network.arrays.items()}
    if draw(st.booleans()):
        state.ema = WeightAverage(0.9, network.arrays, updates=draw(st.integers(0, 1000)))
        for value in state.ema.arrays.values():
            value[...] = weights(draw, value)
    return state


@st.composite
def runs(draw):
    """A Case: random network, weights, optimizer slots, loop state, generator and metadata."""
    layer_specs, classes = draw(specs())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    inputs = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    network = Network.from_specs(
        layer_specs, (inputs,), rng=np.random.default_rng(seed), dtype=dtype
    )
    kind = draw(st.sampled_from(OPTIMIZERS.names()))
    optimizer = OPTIMIZERS.build({"type": kind, "lr": 0.01})
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(0, 2))):  # fills the optimizer's slots and step count
        optimizer.update(
            network.params,
            {k: noise.standard_normal(v.shape).astype(v.dtype) for k, v in network.params.items()},
        )
    for value in network.arrays.values():
        value[...] = weights(draw, value)
    rng = np.random.default_rng(seed)
    rng.random(draw(st.integers(0, 50)))  # a generator somewhere in its stream
    names = tuple(draw(st.lists(TEXT, min_size=classes, max_size=classes)))
    info = checkpoint.RunInfo(
        config={"seed": seed, "data": {"dataset": "idx"}, "note": draw(TEXT)},
        seed=seed,
        input_shape=(inputs,),
        num_classes=classes,
        class_names=names,
        dataset="idx",
        checksums=draw(st.dictionaries(TEXT, st.text("0123456789abcdef", max_size=64))),
        folder=draw(st.none() | TEXT),
        name=draw(st.none() | st.text(max_size=60)),
    )
    extras = {
        "complete": draw(st.booleans()),
        "weights": draw(st.sampled_from(["last", "best", "ema"])),
        "metrics": draw(st.dictionaries(TEXT, st.none() | TEXT | st.integers() | FRACTION)),
    }
    state = loop_state(draw, network, rows=draw(st.integers(1, 40)))
    return Case(layer_specs, kind, network, optimizer, state, rng, info, extras)


@dataclass
class Case:
    """A run as it could have been saved, and how to build its network and optimizer anew."""

    specs: list[dict]
    optimizer_type: str
    network: Network
    optimizer: Optimizer
    state: TrainState
    rng: np.random.Generator
    info: checkpoint.RunInfo
    extras: dict

    def saved_and_loaded(self) -> checkpoint.Checkpoint:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "c.npz"
            checkpoint.save(
                path, self.network, self.optimizer, self.state, self.rng, self.info, **self.extras
            )
            return checkpoint.load(path)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit: dtype, shape and bytes (so -0.0 and 0.0 differ)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same_groups(stored: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    return stored.keys() == expected.keys() and all(same(stored[k], expected[k]) for k in stored)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_save_then_load_gives_back_every_array_and_field(case):
    network, optimizer, state, extras = case.network, case.optimizer, case.state, case.extras
    ckpt = case.saved_and_loaded()
    assert same_groups(ckpt.group("param"), network.params)
    assert same_groups(ckpt.group("buffer"), network.buffers)
    assert same_groups(ckpt.group("optim"), optimizer.state_dict())
    assert same_groups(ckpt.group("best"), state.best_params or {})
    assert same_groups(ckpt.group("ema"), state.ema.arrays if state.ema else {})
    order = ckpt.group("state").get("order")
    assert (order is None) == (state.order is None)
    assert order is None or same(order, state.order)
    assert ckpt.info == case.info
    assert ckpt.history == state.history and ckpt.metrics == extras["metrics"]
    assert (ckpt.complete, ckpt.weights) == (extras["complete"], extras["weights"])
    assert (ckpt.epochs, ckpt.step) == (state.epoch, state.step)
    assert ckpt.meta["rng_state"] == case.rng.bit_generator.state


LOOP_FIELDS = (
    "epoch", "step", "loss_sum", "correct", "seen", "seconds", "history", "best_val_accuracy",
    "best_epoch", "stale_epochs", "stopped_early", "wall_seconds",
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_restore_training_puts_the_run_back_into_fresh_objects(case):
    ckpt, state = case.saved_and_loaded(), case.state
    dtype = next(iter(case.network.params.values())).dtype
    fresh = Network.from_specs(
        case.specs, case.info.input_shape, rng=np.random.default_rng(1), dtype=dtype
    )
    fresh_optimizer = OPTIMIZERS.build({"type": case.optimizer_type, "lr": 0.01})
    fresh_rng = np.random.default_rng(12345)
    decay = 0.9 if state.ema is not None else None
    back = restore.restore_training(ckpt, fresh, fresh_optimizer, fresh_rng, ema_decay=decay)
    assert same_groups(fresh.arrays, case.network.arrays)
    assert same_groups(fresh_optimizer.state_dict(), case.optimizer.state_dict())
    assert fresh_rng.bit_generator.state == case.rng.bit_generator.state
    assert same_groups(back.best_params or {}, state.best_params or {})
    if state.ema is not None:
        assert same_groups(back.ema.arrays, state.ema.arrays)
        assert back.ema.updates == state.ema.updates
    for field in LOOP_FIELDS:
        assert getattr(back, field) == getattr(state, field), field
    assert (back.order is None) == (state.order is None)
    assert back.order is None or same(back.order, state.order)
