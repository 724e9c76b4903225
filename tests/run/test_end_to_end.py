"""End to end on the real Fashion-MNIST copy, as a new user runs it (opt in: pytest -m slow)."""

import json
import subprocess
import sys

import pytest

from cli_helpers import records, subprocess_env
from data_helpers import LoopbackServer, serve

FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]

pytestmark = pytest.mark.slow


def bptrain(*args, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "bptrain", *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=900,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_train_then_eval_reproduces_the_test_accuracy(tmp_path, fashion_folder):
    out = tmp_path / "m.npz"
    run = bptrain(
        "train",
        "mlp",
        "--set",
        "data.dataset=fashion-mnist",
        "--set",
        "train.epochs=2",
        "--data-dir",
        fashion_folder,
        "--offline",
        "--out",
        out,
    )
    recs = records(run.stdout)
    assert [r["event"] for r in recs] == ["epoch", "epoch", "summary"]
    summary = recs[-1]
    assert summary["test_accuracy"] > 0.80  # two epochs of the seed's net on Fashion-MNIST
    evaluated = records(bptrain("eval", out, "--data-dir", fashion_folder, "--offline").stdout)[0]
    assert evaluated["accuracy"] == summary["test_accuracy"] and evaluated["n"] == 10000


def test_download_over_a_loopback_mirror_then_use_it_offline(tmp_path, fashion_folder):
    with LoopbackServer() as server:
        for name in FILES:
            server.routes[f"/fm/{name}.gz"] = serve((fashion_folder / f"{name}.gz").read_bytes())
        done = bptrain(
            "download",
            "--dataset",
            "fashion-mnist",
            "--mirror",
            server.url + "fm/",
            "--data-dir",
            tmp_path,
        )
    record = json.loads(done.stdout)
    assert [f["source"] for f in record["files"]] == [f"{server.url}fm/{n}.gz" for n in FILES]
    again = json.loads(
        bptrain(
            "download", "--dataset", "fashion-mnist", "--data-dir", tmp_path, "--offline"
        ).stdout
    )
    assert [f["source"] for f in again["files"]] == ["cache"] * 4
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in record["files"]]


def test_the_copy_is_used_in_place_offline(fashion_folder):
    record = json.loads(
        bptrain(
            "download", "--dataset", "fashion-mnist", "--data-dir", fashion_folder, "--offline"
        ).stdout
    )
    assert record["folder"] == str(fashion_folder)
    wrong = bptrain(
        "download", "--dataset", "mnist", "--data-dir", fashion_folder, "--offline", check=False
    )
    assert wrong.returncode == 3 and wrong.stdout == ""
    assert wrong.stderr.startswith("Error:") or "\nError:" in wrong.stderr


def test_gradcheck_of_every_preset_on_fashion_shapes():
    for preset in ("mlp", "cnn"):
        done = bptrain("gradcheck", preset, "--set", "data.dataset=fashion-mnist", "--coords", "5")
        assert json.loads(done.stdout)["ok"]
