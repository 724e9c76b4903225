"""Checkpoints: atomic writes, strict loads, exact round trips, no pickle."""

import json
import zipfile

import numpy as np
import pytest

from bptrain.engine.network import Network
from bptrain.engine.optimizers import OPTIMIZERS
from bptrain.engine.train import FitOptions, fit
from bptrain.errors import CheckpointError
from bptrain.run import checkpoint, restore

SPECS = [
    {"type": "affine", "units": 8},
    {"type": "batch_norm"},
    {"type": "relu"},
    {"type": "affine", "units": 3},
]


INFO = checkpoint.RunInfo(
    config={"seed": 0, "data": {"dataset": "idx"}},
    seed=0,
    input_shape=(5,),
    num_classes=3,
    class_names=("a", "b", "c"),
    dataset="idx",
)


def trained(seed=0, epochs=1):
    rng = np.random.default_rng(seed)
    net = Network.from_specs(SPECS, (5,), rng=rng)
    opt = OPTIMIZERS.build({"type": "adam", "lr": 0.01})
    x = rng.standard_normal((64, 5)).astype(np.float32)
    t = rng.integers(0, 3, 64)
    state = fit(net, opt, (x, t), FitOptions(epochs, 16, val=(x[:8], t[:8])), rng=rng)
    return net, opt, state, rng


def test_round_trip_restores_everything_exactly(tmp_path):
    net, opt, state, rng = trained()
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO, metrics={"note": "x"})
    ckpt = checkpoint.load(path)
    assert ckpt.meta["format_version"] == checkpoint.FORMAT_VERSION
    assert ckpt.meta["numpy_version"] == np.__version__ and ckpt.metrics["note"] == "x"
    other, other_opt, _, other_rng = trained(seed=1)
    restored = restore.restore_training(ckpt, other, other_opt, other_rng)
    for name in net.params:
        assert np.array_equal(other.params[name], net.params[name])
    for name in net.buffers:  # BatchNorm running statistics travel too
        assert np.array_equal(other.buffers[name], net.buffers[name])
    assert other_rng.bit_generator.state == rng.bit_generator.state
    assert restored.history == state.history and restored.epoch == state.epoch
    for key, value in opt.state_dict().items():
        assert np.array_equal(other_opt.state_dict()[key], value)


def test_the_file_holds_no_pickles(tmp_path):
    net, opt, state, rng = trained()
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO)
    with np.load(path, allow_pickle=False) as npz:  # would raise on any object array
        assert all(npz[name].dtype != object for name in npz.files)
    meta = json.loads(np.load(path)["__meta__"].tobytes())
    assert meta["format"] == "bptrain-checkpoint"


class _Bomb:
    """Fails while numpy serializes it, like a crash halfway through a write."""

    def __array__(self, dtype=None, copy=None):
        raise KeyboardInterrupt


def test_a_failed_write_never_replaces_the_existing_checkpoint(tmp_path):
    net, opt, state, rng = trained()
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        checkpoint._write(path, {"a": np.zeros(3), "b": _Bomb()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temp file left


def test_unwritable_destination_is_a_checkpoint_error(tmp_path):
    net, opt, state, rng = trained()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        checkpoint.save(blocker / "c.npz", net, opt, state, rng, INFO)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "not a readable .npz"),
        ("truncated", "not a readable .npz"),
        ("foreign", "no __meta__"),
        ("bad-json", "not valid JSON"),
        ("future", "format version 99"),
        ("extra", "unexpected entry"),
    ],
)
def test_damaged_checkpoints_are_refused_clearly(tmp_path, damage, message):
    net, opt, state, rng = trained()
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO)
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays["__meta__"].tobytes())
        if damage == "foreign":
            del arrays["__meta__"]
        elif damage == "bad-json":
            arrays["__meta__"] = np.frombuffer(b"{not json", dtype=np.uint8)
        elif damage == "future":
            meta["format_version"] = 99
            arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        else:
            arrays["weights"] = np.zeros(2)
        np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_shape_dtype_and_key_mismatches_are_refused(tmp_path):
    net, opt, state, rng = trained()
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO)
    ckpt = checkpoint.load(path)
    wider = Network.from_specs([{"type": "affine", "units": 9}, *SPECS[1:]], (5,))
    with pytest.raises(CheckpointError, match=r"0\.W is float32\[5, 8\]"):
        restore.restore_network(wider, ckpt)
    f64 = Network.from_specs(SPECS, (5,), dtype=np.float64)
    with pytest.raises(CheckpointError, match="float32"):
        restore.restore_network(f64, ckpt)
    fewer = Network.from_specs([{"type": "affine", "units": 3}], (5,))
    with pytest.raises(CheckpointError, match="missing"):
        restore.restore_network(fewer, ckpt)
    ckpt.arrays["param"]["0.W"] = np.full((5, 8), np.nan, dtype=np.float32)
    with pytest.raises(CheckpointError, match="non-finite"):
        restore.restore_network(Network.from_specs(SPECS, (5,)), ckpt)


def test_best_weights_are_kept_beside_the_last(tmp_path):
    net, opt, state, rng = trained(epochs=3)
    path = checkpoint.save(tmp_path / "c.npz", net, opt, state, rng, INFO)
    ckpt = checkpoint.load(path)
    assert set(ckpt.group("best")) == set(net.params) | set(net.buffers)
    fresh = Network.from_specs(SPECS, (5,))
    restore.restore_network(fresh, ckpt, "best")
    for name, value in state.best_params.items():
        target = fresh.params.get(name, fresh.buffers.get(name))
        assert np.array_equal(target, value)
    assert zipfile.is_zipfile(path)
