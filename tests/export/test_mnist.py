"""Every preset, trained briefly on the real MNIST, exported to ONNX: ONNX Runtime's answers on
the 10,000 test digits are `bptrain eval`'s, digit by digit (slow: opt in with -m slow)."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain import data
from bptrain.config import preset_names
from cli_helpers import invoke, records

onnxruntime = pytest.importorskip(
    "onnxruntime", reason="onnxruntime (in the dev extra) is not installed"
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("preset", preset_names())
def test_onnx_runtime_agrees_with_eval_on_every_test_digit(preset, mnist_folder, tmp_path, forward):
    where = ["--data-dir", mnist_folder, "--offline"]
    model, out = tmp_path / f"{preset}.npz", tmp_path / f"{preset}.onnx"
    brief = ["--set", "train.epochs=1", "--set", "data.limit_train=3000"]
    trained = invoke("-q", "train", preset, *where, *brief, "--out", model)
    assert trained.exit_code == 0, trained.stderr
    exported = invoke("export", model, "--out", out)
    assert exported.exit_code == 0, exported.stderr
    (record,) = records(exported.stdout)
    assert record["verified"]["samples"] == 64 + 256  # seeded, then MNIST's own test digits
    (evaluated,) = records(invoke("-q", "eval", model, *where).stdout)

    test = data.load("mnist", mnist_folder, offline=True, quiet=True, splits=("test",))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    theirs = np.concatenate(
        [session.run(["probabilities"], {"pixels": test.x_test[i : i + 1000]})[0]
         for i in range(0, 10_000, 1000)]
    )  # fmt: skip
    ours = np.concatenate(
        [forward(model, test.x_test[i : i + 1000]) for i in range(0, 10_000, 1000)]
    )
    assert theirs.shape == (10_000, 10)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))
    assert np.mean(theirs.argmax(axis=1) == test.t_test) == evaluated["accuracy"]
    assert (
        evaluated["n"] == 10_000 and evaluated["accuracy"] > 0.3
    )  # it learned something (chance: 0.1)
