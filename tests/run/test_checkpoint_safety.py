"""Checkpoint safety checks, each guarded by a test that fails when the check is removed:
no unpickling, no checkpoint replaced by one that does not read back, and any malformed
metadata refused with exit 4 (never a crash, exit 70)."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bptrain.errors import CheckpointError
from bptrain.run import checkpoint, restore
from cli_helpers import invoke, small_config, write_config


class _CreatesFile:
    """Unpickling this creates a file: proof that a loader ran the pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, idx_folder):
    folder = tmp_path_factory.mktemp("trained")
    out = folder / "m.npz"
    config = write_config(folder / "c.yaml", small_config(idx_folder, epochs=1))
    assert invoke("train", config, "--out", out).exit_code == 0
    return out


def _entries(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("entry", ["param/1.W", "state/order", "__meta__"])
def test_a_pickle_inside_a_checkpoint_is_never_run(tmp_path, trained, entry):
    marker = tmp_path / "pwned"
    arrays = _entries(trained)
    payload = np.empty(1, dtype=object)
    payload[0] = _CreatesFile(marker)
    arrays[entry] = payload
    path = tmp_path / "evil.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)  # savez pickles object arrays
    for args in (["eval", path], ["train", "--resume", path]):
        result = invoke(*args)
        assert result.exit_code == 4, result.stderr
    assert not marker.exists()


def test_a_save_that_does_not_read_back_leaves_the_old_checkpoint(tmp_path, trained):
    from bptrain.engine.network import Network
    from bptrain.engine.optimizers import OPTIMIZERS
    from bptrain.engine.train import TrainState

    path = tmp_path / "m.npz"
    path.write_bytes(trained.read_bytes())
    before = path.read_bytes()
    ckpt = checkpoint.load(path)
    network = Network.from_specs(ckpt.info.config["model"]["layers"], ckpt.info.input_shape)
    restore.restore_network(network, ckpt)
    network.params["1.W"][0, 0] = np.nan  # a broken model must never replace a good one
    optimizer = OPTIMIZERS.build({"type": "sgd", "lr": 0.1})
    rng = np.random.default_rng(0)
    with pytest.raises(CheckpointError, match="does not read back"):
        checkpoint.save(path, network, optimizer, TrainState(), rng, ckpt.info)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temp file left


# --- fuzzing the metadata: every key removed, every type changed, out-of-range values --------

# Loop-state edits a resume may accept: they change a report's figures, not the training
# (the run's clock; the EMA's update count, which this run, with no EMA, does not use).
_HARMLESS = {
    ("train_state", k)
    for k in (
        "seconds", "loss_sum", "best_val_accuracy", "stopped_early", "wall_seconds", "ema_updates"
    )
}  # fmt: skip
_OTHER_VALUES = [None, "x", -1, 1.5, [], {}, True, 10**12]


def _paths(meta: dict) -> list[tuple]:
    """Every key path of the metadata down to the scalars (history: its first record)."""
    found = []
    for key, value in meta.items():
        found.append((key,))
        if isinstance(value, dict) and key not in ("config", "metrics", "rng_state"):
            found += [(key, *sub) for sub in _paths(value)]
        if key == "history" and value:
            found += [(key, 0, *sub) for sub in _paths(value[0])]
    return found


def _with(meta: dict, path: tuple, value, remove: bool) -> dict:
    meta = json.loads(json.dumps(meta))
    node = meta
    for part in path[:-1]:
        node = node[part]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return meta


def _write(path: Path, arrays: dict, meta: dict) -> None:
    meta["digest"] = checkpoint.digest(meta, arrays)  # the schema, not the digest, must refuse
    with open(path, "wb") as handle:
        np.savez(handle, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))


def _cases(meta: dict):
    for path in _paths(meta):
        if path == ("digest",):
            continue
        yield path, None, True
        for value in _OTHER_VALUES:
            yield path, value, False


def test_malformed_metadata_is_exit_4_never_a_crash(tmp_path, trained):
    arrays = _entries(trained)
    meta = json.loads(arrays.pop("__meta__").tobytes())
    path = tmp_path / "fuzz.npz"
    accepted = []
    for key_path, value, remove in _cases(meta):
        _write(path, arrays, _with(meta, key_path, value, remove))
        for command in (
            ["eval", path],
            [
                "train",
                "--resume",
                path,
                "--epochs",
                "2",
                "--out",
                tmp_path / "r.npz",
                "--overwrite",
            ],
        ):
            result = invoke(*command)
            what = (key_path, "removed" if remove else value, command[0])
            assert result.exit_code in (0, 4), (what, result.stderr)
            if result.exit_code == 0:
                accepted.append(what)
            else:
                errors = [l for l in result.stderr.splitlines() if l.startswith("Error:")]
                assert len(errors) == 1, (what, result.stderr)
    # Only edits that keep the file meaningful may pass: nothing structural.
    # What may pass is bookkeeping an evaluation does not use; never what defines the model.
    structural = {"config", "seed", "input_shape", "num_classes", "class_names", "weights"}
    assert not [w for w in accepted if w[0][0] in structural | {"format", "format_version"}]
    resumed = {w[0] for w in accepted if w[2] == "train"}
    assert not {p for p in resumed if p[0] in ("train_state", "rng_state")} - _HARMLESS, resumed


@pytest.mark.parametrize(
    "edit",
    [
        lambda m, a: a.__setitem__("state/order", np.full(500, 10**9, dtype=np.int64)),
        lambda m, a: a.__setitem__("state/order", np.arange(500, dtype=np.float32)),
        lambda m, a: m["train_state"].__setitem__("step", 10**6),
        lambda m, a: m.__setitem__("rng_state", {"bit_generator": "PCG64", "state": 5}),
        lambda m, a: a.__setitem__("optim/steps", np.array(-3)),
        lambda m, a: a.__setitem__("optim/1.W.velocity", np.zeros(3, np.float32)),
    ],
)
def test_a_resume_position_that_does_not_fit_is_exit_4(tmp_path, trained, edit):
    arrays = _entries(trained)
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta["train_state"]["step"] = 0
    edit(meta, arrays)
    path = tmp_path / "m.npz"
    _write(path, arrays, meta)
    result = invoke("train", "--resume", path, "--set", "train.epochs=3")
    assert result.exit_code == 4, result.stderr
    assert zipfile.is_zipfile(path)


def test_compressed_entries_and_deep_metadata_are_refused(tmp_path, trained):
    arrays = _entries(trained)
    meta = json.loads(arrays.pop("__meta__").tobytes())
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    result = invoke("eval", bomb)
    assert result.exit_code == 4 and "compressed" in result.stderr
    deep = tmp_path / "deep.npz"
    nested: list = []
    for _ in range(200):  # deep enough to refuse, shallow enough for json to write
        nested = [nested]
    meta["metrics"] = {"deep": nested}
    _write_raw(deep, arrays, json.dumps(meta))
    result = invoke("eval", deep)
    assert result.exit_code == 4 and "metadata" in result.stderr, result.stderr


def _write_raw(path: Path, arrays: dict, text: str) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays, __meta__=np.frombuffer(text.encode(), np.uint8))
