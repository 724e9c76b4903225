"""The training loop: the seed's four steps, exact epochs, seeded repeatability, exact resume."""

import numpy as np
import pytest

from bptrain.engine.network import Network
from bptrain.engine.optimizers import SGD
from bptrain.engine.train import FitHooks, FitOptions, TrainState, evaluate, fit
from bptrain.errors import DivergedError


def blobs(n, seed=0, classes=4, dim=20):
    """A learnable synthetic problem: Gaussian clusters around random centres."""
    centres = np.random.default_rng(99).standard_normal((classes, dim)) * 2
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, n)
    x = (centres[t] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, t


def make(seed, classes=4, dim=20):
    rng = np.random.default_rng(seed)
    specs = [
        {"type": "affine", "units": 32},
        {"type": "relu"},
        {"type": "affine", "units": classes},
    ]
    return Network.from_specs(specs, (dim,), rng=rng), rng


def run(seed, epochs=5, batch_size=32, **kwargs):
    net, rng = make(seed)
    opt = SGD(lr=0.1)
    options = FitOptions(epochs=epochs, batch_size=batch_size, val=blobs(200, seed=1), **kwargs)
    state = fit(net, opt, blobs(1000), options, rng=rng)
    return net, state


def test_learns_a_learnable_problem():
    net, state = run(seed=0)
    x_test, t_test = blobs(500, seed=2)
    assert net.accuracy(x_test, t_test) > 0.95
    assert len(state.history) == 5
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    assert state.best_val_accuracy == max(r["val_accuracy"] for r in state.history)


def test_same_seed_gives_identical_histories_and_parameters():
    net_a, a = run(seed=7)
    net_b, b = run(seed=7)

    def strip(h):
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")} for r in h
        ]

    assert strip(a.history) == strip(b.history)
    for name in net_a.params:
        assert np.array_equal(net_a.params[name], net_b.params[name])
    _, c = run(seed=8)
    assert strip(c.history) != strip(a.history)


@pytest.mark.parametrize("batch_size", [1, 7, 100, 999, 1000, 5000])
def test_every_sample_is_seen_exactly_once_per_epoch(batch_size):
    x, t = blobs(1000)
    x = x[:, :1].copy()
    x[:, 0] = np.arange(1000)  # the sample id rides in the input
    seen = []
    net = Network.from_specs([{"type": "affine", "units": 4}], (1,), rng=np.random.default_rng(0))
    original = net.gradient

    def spy(xb, tb):
        seen.extend(xb[:, 0].astype(int).tolist())
        return original(xb, tb)

    net.gradient = spy
    options = FitOptions(epochs=2, batch_size=batch_size)
    fit(net, SGD(lr=1e-6), (x, t), options, rng=np.random.default_rng(1))
    assert sorted(seen[:1000]) == list(range(1000)) and sorted(seen[1000:]) == list(range(1000))
    assert seen[:1000] != seen[1000:]  # reshuffled each epoch


def test_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one():
    full_net, full = run(seed=3, epochs=3)
    net, rng = make(3)
    opt = SGD(lr=0.1)
    calls = iter(range(10**6))
    options = FitOptions(epochs=3, batch_size=32, val=blobs(200, seed=1))
    stop = FitHooks(stop_requested=lambda: next(calls) == 45)
    state = fit(net, opt, blobs(1000), options, rng=rng, hooks=stop)  # stops in epoch 2, mid-way
    assert state.interrupted and state.epoch == 1 and state.step == 13
    state = fit(net, opt, blobs(1000), options, rng=rng, state=state)
    assert not state.interrupted
    for name in net.params:
        assert np.array_equal(net.params[name], full_net.params[name])
    assert [r["val_loss"] for r in state.history] == [r["val_loss"] for r in full.history]
    assert [r["train_loss"] for r in state.history] == [r["train_loss"] for r in full.history]


def test_divergence_stops_with_the_epoch_step_and_layer_named():
    net, rng = make(0)
    net.params["0.W"] *= 1e30
    with pytest.raises(DivergedError) as info:
        fit(net, SGD(lr=1e10), blobs(100), FitOptions(epochs=2, batch_size=10), rng=rng)
    text = str(info.value)
    assert "epoch 1, step" in text and "layer" in text and "optimizer.lr" in text


def test_early_stopping_and_best_parameters():
    net, state = run(seed=0, epochs=40, early_stopping=2)
    assert state.stopped_early and len(state.history) < 40
    assert state.best_epoch <= len(state.history) - 2
    assert set(state.best_params) == set(net.params)


def test_evaluate_reports_a_confusion_matrix():
    net, _ = run(seed=0)
    x, t = blobs(300, seed=4)
    result = evaluate(net, x, t, num_classes=4)
    assert result.confusion.sum() == 300 and result.n == 300
    assert np.trace(result.confusion) / 300 == pytest.approx(result.accuracy)
    assert result.accuracy == pytest.approx(net.accuracy(x, t))
    per_class = result.per_class_accuracy
    assert len(per_class) == 4 and all(0 <= a <= 1 for a in per_class)


def test_train_state_default_is_a_fresh_start():
    assert TrainState().epoch == 0 and TrainState().history == []


def test_rows_train_on_a_subset_with_the_same_draws_as_a_copy():
    x, t = blobs(300)
    rows = np.arange(0, 300, 3)
    seen = []
    net_a, rng_a = make(11)
    original = net_a.gradient

    def spy(xb, tb):
        seen.extend(map(tuple, xb[:, :2].tolist()))
        return original(xb, tb)

    net_a.gradient = spy
    fit(net_a, SGD(lr=0.1), (x, t), FitOptions(2, 16, rows=rows), rng=rng_a)
    assert set(seen) == set(map(tuple, x[rows, :2].tolist())) and len(seen) == 200
    net_b, rng_b = make(11)
    fit(net_b, SGD(lr=0.1), (x[rows], t[rows]), FitOptions(2, 16), rng=rng_b)
    for name in net_a.params:
        assert np.array_equal(net_a.params[name], net_b.params[name])


def test_a_non_finite_gradient_is_caught_and_named():
    net, rng = make(0)
    original = net.layers[2].backward

    def poisoned(dout):
        dx = original(dout)
        net.layers[2].grads["W"][0, 0] = np.inf  # one bad gradient entry in the last layer
        return dx

    net.layers[2].backward = poisoned
    with pytest.raises(DivergedError) as info:
        fit(net, SGD(lr=0.1), blobs(100), FitOptions(epochs=2, batch_size=10), rng=rng)
    assert "2.W of layer 2 (affine)" in str(info.value)
    assert "epoch 1, step 2" in str(info.value)  # the bad update was step 1


def test_a_non_finite_last_update_of_an_epoch_is_caught():
    net, rng = make(0)
    original = net.layers[2].backward
    calls = []

    def poisoned(dout):
        dx = original(dout)
        calls.append(1)
        if len(calls) == 10:  # the tenth and last step of the first epoch
            net.layers[2].grads["b"][1] = np.nan
        return dx

    net.layers[2].backward = poisoned
    with pytest.raises(DivergedError, match=r"epoch 1, step 10: the last update made 2\.b"):
        fit(net, SGD(lr=0.1), blobs(100), FitOptions(epochs=2, batch_size=10), rng=rng)


@pytest.mark.parametrize(
    "specs",
    [
        [{"type": "affine", "units": 32}, {"type": "relu"}, {"type": "affine", "units": 4}],
        [
            {"type": "affine", "units": 16},
            {"type": "batch_norm"},
            {"type": "sigmoid"},
            {"type": "dropout", "rate": 0.2},
            {"type": "affine", "units": 4},
        ],
    ],
)
def test_float32_training_tracks_float64(specs):
    """The float32 fast path computes the same thing as float64, up to rounding."""
    x, t = blobs(256)
    results = {}
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(5)
        net = Network.from_specs(specs, (20,), rng=rng, dtype=dtype)
        state = fit(net, SGD(lr=0.05), (x.astype(dtype), t), FitOptions(2, 32), rng=rng)
        results[dtype] = (net, state.history[-1]["train_loss"])
    (net32, loss32), (net64, loss64) = results[np.float32], results[np.float64]
    assert loss32 == pytest.approx(loss64, rel=1e-4)
    for name in net64.params:
        assert net32.params[name].dtype == np.float32
        np.testing.assert_allclose(net32.params[name], net64.params[name], rtol=1e-3, atol=1e-5)


def test_a_mid_epoch_checkpoint_resumes_adam_batchnorm_dropout_and_a_schedule_exactly(tmp_path):
    from bptrain.engine.optimizers import OPTIMIZERS
    from bptrain.engine.schedules import SCHEDULES
    from bptrain.run import checkpoint, restore

    specs = [
        {"type": "affine", "units": 32},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "dropout", "rate": 0.3},
        {"type": "affine", "units": 4},
    ]
    train, val = blobs(600), blobs(100, seed=1)

    def fresh():
        rng = np.random.default_rng(21)
        net = Network.from_specs(specs, (20,), rng=rng)
        opt = OPTIMIZERS.build({"type": "adam", "lr": 0.003})
        return net, opt, rng, SCHEDULES.build({"type": "cosine", "warmup": 1})

    net, opt, rng, schedule = fresh()
    full = fit(net, opt, train, FitOptions(3, 32, val=val, schedule=schedule), rng=rng)
    net_a, opt_a, rng_a, schedule = fresh()
    calls = iter(range(10**6))
    stop = FitHooks(stop_requested=lambda: next(calls) == 30)
    options = FitOptions(epochs=3, batch_size=32, val=val, schedule=schedule)
    state = fit(net_a, opt_a, train, options, rng=rng_a, hooks=stop)
    assert state.interrupted and state.epoch == 1 and state.step == 11
    info = checkpoint.RunInfo(
        config={"seed": 21, "data": {"dataset": "idx"}}, seed=21, input_shape=(20,),
        num_classes=4, class_names=tuple("abcd"), dataset="idx",
    )  # fmt: skip
    path = checkpoint.save(tmp_path / "mid.npz", net_a, opt_a, state, rng_a, info)
    net_b, opt_b, rng_b, schedule = fresh()  # a new process: everything comes from the file
    resumed = restore.restore_training(checkpoint.load(path), net_b, opt_b, rng_b)
    options = FitOptions(epochs=3, batch_size=32, val=val, schedule=schedule)
    done = fit(net_b, opt_b, train, options, rng=rng_b, state=resumed)
    for name in net.arrays:
        assert np.array_equal(net_b.arrays[name], net.arrays[name]), name
    strip = ("seconds", "samples_per_second")
    assert [{k: v for k, v in r.items() if k not in strip} for r in done.history] == [
        {k: v for k, v in r.items() if k not in strip} for r in full.history
    ]


def test_an_overflowing_validation_loss_is_divergence_not_a_crash():
    rng = np.random.default_rng(0)
    net = Network.from_specs([{"type": "affine", "units": 3}], (4,), "identity_with_mse", rng=rng)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    t = rng.integers(0, 3, 20)
    huge = np.full((5, 4), 3e37, dtype=np.float32)  # finite inputs whose squared error is inf
    opt = SGD(lr=0.01)
    with pytest.raises(DivergedError, match="validation loss is inf"):
        fit(net, opt, (x, t), FitOptions(1, 10, val=(huge, t[:5])), rng=rng)
