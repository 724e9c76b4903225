"""Weight averaging (EMA): the average itself, and that runs evaluate, save and resume it."""

import numpy as np

from bptrain.data import augment
from bptrain.engine.averaging import WeightAverage
from bptrain.engine.network import Network
from bptrain.engine.optimizers import OPTIMIZERS
from bptrain.engine.schedules import SCHEDULES
from bptrain.engine.train import FitHooks, FitOptions, TrainState, evaluate, fit
from bptrain.run import checkpoint, restore
from bptrain.run.model import load_model
from cli_helpers import invoke, records, small_config, without_timing, write_config


def test_the_average_follows_the_closed_form_with_its_warm_up():
    w = {"a": np.zeros(3, np.float64), "count": np.zeros(1, np.int64)}
    ema = WeightAverage(0.9, w)
    assert set(ema.arrays) == {"a"}  # integer buffers are not averaged
    expected = np.zeros(3)
    for n, value in enumerate([1.0, 2.0, 4.0, 8.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0]):
        w["a"][...] = value
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
        ema.update(w)
        np.testing.assert_allclose(ema.arrays["a"], expected, rtol=1e-12)
    assert ema.updates == 12 and ema.current_decay() == 13 / 22
    ema.updates = 10**6
    assert ema.current_decay() == 0.9


def test_the_average_keeps_float32():
    w = {"a": np.ones(4, np.float32)}
    ema = WeightAverage(0.99, w)
    ema.update({"a": np.full(4, 3, np.float32)})
    assert ema.arrays["a"].dtype == np.float32


def _ema_config(folder, **train):
    config = small_config(folder, **train)
    config["model"]["layers"][1:2] = [
        {"type": "affine", "units": 32, "init": "he"},
        {"type": "batch_norm"},
    ]
    config["optimizer"] = {"type": "adam", "lr": 0.003}
    config["train"]["ema"] = 0.9
    return config


def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_tested_and_saved(
    tmp_path, idx_folder
):
    path = write_config(tmp_path / "ema.yaml", _ema_config(idx_folder, epochs=2))
    out = tmp_path / "ema.npz"
    result = invoke("train", path, "--out", out)
    assert result.exit_code == 0, result.stderr
    summary = records(result.stdout)[-1]
    assert summary["weights"] == "ema"
    ckpt = checkpoint.load(out)
    assert ckpt.weights == "ema"
    raw, averaged = ckpt.group("param"), ckpt.group("ema")
    assert set(averaged) >= set(raw)
    assert all(not np.array_equal(raw[k], averaged[k]) for k in raw)
    buffers = [k for k in averaged if k not in raw]
    assert buffers and all(
        not np.array_equal(ckpt.group("buffer")[k], averaged[k]) for k in buffers
    )
    # The summary's test figures are the averaged model's: eval (auto weights) reproduces them,
    # and the raw weights give other figures.
    auto = records(invoke("eval", out).stdout)[0]
    last = records(invoke("eval", out, "--weights", "last").stdout)[0]
    assert auto["weights"] == "ema" and auto["loss"] == summary["test_loss"]
    assert last["loss"] != summary["test_loss"]
    model = load_model(str(out))
    for name, value in averaged.items():
        assert np.array_equal(model.network.arrays[name], value), name


def test_restore_best_with_ema_keeps_the_averaged_weights_of_the_best_epoch(tmp_path, idx_folder):
    config = _ema_config(idx_folder, epochs=3, restore_best=True)
    path = write_config(tmp_path / "best.yaml", config)
    out = tmp_path / "best.npz"
    recs = records(invoke("train", path, "--out", out).stdout)
    ckpt = checkpoint.load(out)
    best_epoch = ckpt.meta["train_state"]["best_epoch"]
    assert recs[-1]["weights"] == "best"
    # The best weights are an average (none equals the raw weights), and validating them gives
    # the best epoch's validation accuracy.
    assert all(not np.array_equal(ckpt.group("best")[k], v) for k, v in ckpt.group("param").items())
    model = load_model(str(out))
    x, t = _validation_rows(ckpt)
    result = evaluate(model.network, x, t, 10)
    assert result.accuracy == recs[best_epoch - 1]["val_accuracy"]


def _validation_rows(ckpt):
    from bptrain.data import load
    from bptrain.run.inputs import config_of
    from bptrain.run.model import _split_arrays

    config = config_of(str(ckpt.path), raw=ckpt.info.config).config
    dataset = load("idx", ckpt.info.folder, offline=True, quiet=True)
    return _split_arrays(config, ckpt.info.seed, dataset, "validation")


def test_resume_with_augmentation_and_ema_is_exact(tmp_path, idx_folder):
    config = _ema_config(idx_folder, epochs=3)
    config["data"]["augment"] = [
        {"type": "shift", "pixels": 2},
        {"type": "hflip", "force": True},
        {"type": "erase"},
    ]
    config["model"]["layers"].insert(4, {"type": "dropout", "rate": 0.3})
    path = write_config(tmp_path / "aug.yaml", config)
    full = records(invoke("train", path, "--out", tmp_path / "full.npz").stdout)
    part = tmp_path / "part.npz"
    assert invoke("train", path, "--set", "train.epochs=1", "--out", part).exit_code == 0
    rest = records(invoke("train", "--resume", part, "--set", "train.epochs=3").stdout)
    assert without_timing(rest[:-1]) == without_timing(full[1:3])
    assert rest[-1]["test_loss"] == full[-1]["test_loss"]
    a, b = checkpoint.load(tmp_path / "full.npz"), checkpoint.load(part)
    for group in ("param", "buffer", "optim", "ema"):
        assert a.group(group) and set(a.group(group)) == set(b.group(group))
        for name, value in a.group(group).items():
            assert np.array_equal(value, b.group(group)[name]), (group, name)


def test_a_mid_epoch_checkpoint_resumes_augmentation_and_ema_exactly(tmp_path):
    rng0 = np.random.default_rng(4)
    x = rng0.random((300, 1, 8, 8), dtype=np.float32)
    t = rng0.integers(0, 3, 300)
    specs = [
        {"type": "conv2d", "filters": 4, "kernel": 3},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "affine", "units": 3},
    ]
    transforms = augment.build([{"type": "shift", "pixels": 1}], "mnist")

    def fresh():
        rng = np.random.default_rng(8)
        net = Network.from_specs(specs, (1, 8, 8), rng=rng)
        opt = OPTIMIZERS.build({"type": "adam", "lr": 0.01})
        state = TrainState(ema=WeightAverage(0.95, net.arrays))
        return net, opt, rng, state

    common = FitOptions(
        epochs=2, batch_size=25, val=(x[:50], t[:50]), augment=transforms,
        schedule=SCHEDULES.build({"type": "linear", "warmup": 0.5}),
    )  # fmt: skip
    net, opt, rng, state = fresh()
    full = fit(net, opt, (x, t), common, rng=rng, state=state)
    net_a, opt_a, rng_a, state_a = fresh()
    calls = iter(range(10**6))
    stop = FitHooks(stop_requested=lambda: next(calls) == 17)
    state_a = fit(net_a, opt_a, (x, t), common, rng=rng_a, state=state_a, hooks=stop)
    assert state_a.interrupted and state_a.epoch == 1 and state_a.step == 5
    info = checkpoint.RunInfo(
        config={"seed": 8, "data": {"dataset": "idx"}}, seed=8, input_shape=(1, 8, 8),
        num_classes=3, class_names=tuple("abc"), dataset="idx",
    )  # fmt: skip
    path = checkpoint.save(tmp_path / "mid.npz", net_a, opt_a, state_a, rng_a, info)
    net_b, opt_b, rng_b, _ = fresh()
    resumed = restore.restore_training(checkpoint.load(path), net_b, opt_b, rng_b, ema_decay=0.95)
    assert resumed.ema.updates == state_a.ema.updates == 17
    done = fit(net_b, opt_b, (x, t), common, rng=rng_b, state=resumed)
    for name in net.arrays:
        assert np.array_equal(net_b.arrays[name], net.arrays[name]), name
        assert np.array_equal(done.ema.arrays[name], full.ema.arrays[name]), name
    assert [r["val_loss"] for r in done.history] == [r["val_loss"] for r in full.history]


def test_turning_ema_on_when_resuming_starts_the_average_from_the_resumed_weights(
    tmp_path, idx_folder
):
    config = _ema_config(idx_folder, epochs=1)
    del config["train"]["ema"]
    path = write_config(tmp_path / "plain.yaml", config)
    part = tmp_path / "plain.npz"
    assert invoke("train", path, "--out", part).exit_code == 0
    result = invoke("train", "--resume", part, "--set", "train.epochs=2", "--set", "train.ema=0.5")
    assert result.exit_code == 0, result.stderr
    ckpt = checkpoint.load(part)
    assert ckpt.weights == "ema" and ckpt.meta["train_state"]["ema_updates"] > 0
