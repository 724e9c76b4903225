"""The compiled loops (numba, the `fast` extra) against the NumPy code they stand in for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bptrain import kernels
from bptrain.errors import ConfigError
from layer_helpers import LAYOUTS, built, in_layout

numba = pytest.importorskip("numba", reason="the fast extra (numba) is not installed")


@pytest.fixture
def numpy_kernels(monkeypatch):
    """Within a test: layers run their NumPy code, as without numba."""
    monkeypatch.setattr(kernels, "_loaded", [None])


def both_ways(run, monkeypatch):
    """run() with the compiled loops, then with NumPy: (compiled result, NumPy result)."""
    monkeypatch.setattr(kernels, "_loaded", [])
    assert kernels.compiled() is not None
    fast = run()
    monkeypatch.setattr(kernels, "_loaded", [None])
    return fast, run()


def batch_norm_pass(x, dout, train=True):
    """A fresh BatchNorm with non-trivial gamma and beta: (out, dx, grads, running stats)."""
    layer = built({"type": "batch_norm", "momentum": 0.7}, x.shape[1:], x.dtype.type)
    c = x.shape[1]
    layer.params["gamma"][...] = np.linspace(0.5, 2.0, c)
    layer.params["beta"][...] = np.linspace(-1.0, 1.0, c)
    if not train:
        layer.forward(x, train=True)  # running statistics worth using
    out = layer.forward(x, train=train)
    dx = layer.backward(dout)
    return (
        out,
        dx,
        {k: g.copy() for k, g in layer.grads.items()},
        {k: b.copy() for k, b in layer.buffers.items()},
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_compiled_matches_numpy(dtype, layout, train, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    # Off-centre values with a wide spread: a loop that summed squares without centring
    # first would lose the variance to cancellation in float32.
    x = in_layout((rng.standard_normal((20, 5, 6, 7)) * 3 + 50).astype(dtype), layout)
    dout = in_layout(rng.standard_normal(x.shape).astype(dtype), layout)
    fast, slow = both_ways(lambda: batch_norm_pass(x, dout, train), monkeypatch)
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(fast[:2], slow[:2], strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(fast[2][key], slow[2][key], rtol=rtol, atol=rtol * 100)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(fast[3][key], slow[3][key], rtol=rtol)


def test_batch_norm_compiled_on_feature_batches(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 33)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    fast, slow = both_ways(lambda: batch_norm_pass(x, dout), monkeypatch)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-4, atol=1e-5)


def test_compiled_results_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "_loaded", [])
    kernels.compiled()
    rng = np.random.default_rng(5)
    x = in_layout(rng.standard_normal((100, 8, 12, 12)).astype(np.float32), "pixel-major")
    dout = in_layout(rng.standard_normal(x.shape).astype(np.float32), "pixel-major")
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            kernels.set_threads(threads)
            assert numba.get_num_threads() == threads
            results.append(batch_norm_pass(x, dout))
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(results[0][:2], results[1][:2], strict=True):
        assert np.array_equal(a, b)
    for key in ("gamma", "beta"):
        assert np.array_equal(results[0][2][key], results[1][2][key])


def max_pool_pass(x, size):
    """A fresh disjoint max-pool: (out, dx for a position-numbered dout, kink state)."""
    layer = built({"type": "max_pool2d", "size": size}, x.shape[1:], x.dtype.type)
    out = layer.forward(x, train=True)
    dout = np.arange(1, out.size + 1, dtype=x.dtype).reshape(out.shape)
    dx = layer.backward(dout)
    return out, dx, layer.kink_state()


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])  # (7, 9): rows and columns no window reaches
def test_max_pool_compiled_is_the_numpy_result_bit_for_bit(size, hw, monkeypatch) -> None:
    rng = np.random.default_rng(6)
    # Few distinct values: most windows hold ties, which must go to the same (first) pixel.
    values = rng.integers(0, 3, size=(6, 4, *hw)).astype(np.float32)
    x = in_layout(values, "pixel-major")
    fast, slow = both_ways(lambda: max_pool_pass(x, size), monkeypatch)
    assert np.array_equal(fast[0], slow[0]) and fast[0].flags.c_contiguous
    assert np.array_equal(fast[1], slow[1])
    assert fast[1].strides == x.strides  # dx pixel-major, as conv2d's backward wants it
    assert len(fast[2]) == 1 and fast[2][0].shape == (*fast[0].shape[2:], 6 * 4)


def test_max_pool_kink_state_tracks_the_winner_when_compiled(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "_loaded", [])
    x = in_layout(np.zeros((1, 1, 2, 2), np.float32), "pixel-major")
    first = max_pool_pass(x, 2)[2][0].copy()
    x[0, 0, 1, 1] = 1.0  # now the last pixel of the window wins
    second = max_pool_pass(x, 2)[2][0]
    assert first.ravel().tolist() == [0] and second.ravel().tolist() == [3]


def test_max_pool_other_layouts_keep_the_numpy_path(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "_loaded", [])
    x = in_layout(np.random.default_rng(7).standard_normal((2, 3, 4, 4)), "C")
    assert len(max_pool_pass(x, 2)[2]) == 2  # the two-stage NumPy argmaxes


def test_kernel_choice_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BPTRAIN_KERNELS", "NumPy")
    assert kernels.choice() == "numpy" and kernels._load("numpy") is None
    monkeypatch.setenv("BPTRAIN_KERNELS", "fortran")
    with pytest.raises(ConfigError, match="BPTRAIN_KERNELS is 'fortran'"):
        kernels.choice()


def test_numpy_choice_never_imports_numba() -> None:
    code = (
        "import sys, numpy as np; from bptrain import kernels; from bptrain.layers import LAYERS;"
        "layer = LAYERS.build({'type': 'batch_norm'});"
        "layer.build((3,), np.random.default_rng(0), np.dtype('float32'));"
        "layer.forward(np.ones((4, 3), np.float32), train=True);"
        "print(kernels.compiled() is None, 'numba' in sys.modules)"
    )
    env = {"BPTRAIN_KERNELS": "numpy", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_compiled_loops_let_idle_threads_sleep_unless_told(given, expected) -> None:
    # Spinning OpenMP threads steal the cores the BLAS threads need (2x slower steps).
    code = (
        "import os; from bptrain import kernels;"
        "print(kernels.compiled() is not None, os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {"BPTRAIN_KERNELS": "numba", "PATH": ""}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", expected]
