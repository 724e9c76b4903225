"""`bptrain eval` through the CLI: scoring a checkpoint, and bad checkpoints."""

import numpy as np
import pytest

from bptrain.run import checkpoint
from cli_helpers import (
    assert_error,
    invoke,
    records,
    small_config,
    write_config,
)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-bptrain"])
def test_bad_checkpoints_exit_4(tmp_path, config_file, damage):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    if damage == "truncate":
        out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    elif damage == "garbage":
        out.write_bytes(b"this is not a zip file")
    else:
        np.savez(out, weights=np.zeros(3))
    assert_error(invoke("eval", out), 4, str(out))


def test_eval_other_splits(tmp_path, config_file):
    out = tmp_path / "m.npz"
    invoke("train", config_file, "--out", out)
    val = records(invoke("eval", out, "--split", "validation").stdout)[0]
    train = records(invoke("eval", out, "--split", "train").stdout)[0]
    assert val["n"] == 100 and train["n"] == 500
    ckpt = checkpoint.load(out)
    assert ckpt.meta["history"][-1]["val_accuracy"] == val["accuracy"]


def test_eval_finds_the_data_where_training_read_it(tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=1)
    config["data"]["dir"] = None
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "m.npz"
    trained = invoke("train", path, "--data-dir", idx_folder, "--out", out)
    assert trained.exit_code == 0, trained.stderr
    evaluated = invoke("eval", out)  # no --data-dir: the checkpoint remembers the folder
    assert evaluated.exit_code == 0, evaluated.stderr
    assert records(evaluated.stdout)[0]["accuracy"] == records(trained.stdout)[-1]["test_accuracy"]
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
