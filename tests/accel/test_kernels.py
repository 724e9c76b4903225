"""The compiled loops (numba, the `fast` extra) against the NumPy code they stand in for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bptrain.accel import blas, conv_blocks, kernels
from bptrain.accel import conv as accel_conv
from bptrain.engine.averaging import WeightAverage
from bptrain.engine.layers import im2col
from bptrain.engine.optimizers import OPTIMIZERS
from bptrain.errors import ConfigError
from bptrain.functional import output_size
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


@pytest.mark.parametrize("offset", [0.0, 1e4])  # the batch mean, in standard deviations
def test_batch_norm_statistics_in_one_pass_keep_the_variance(offset, monkeypatch) -> None:
    """The compiled statistics sum x - running mean and its squares in one pass; a batch far
    from the running mean (a fresh layer's 0 here) must not lose its variance to cancellation."""
    monkeypatch.setattr(kernels, "_loaded", [])
    rng = np.random.default_rng(14)
    x = in_layout((rng.standard_normal((50, 4, 6, 6)) + offset).astype(np.float32), "pixel-major")
    layer = built({"type": "batch_norm", "momentum": 0.0}, x.shape[1:], np.float32)
    layer.forward(x, train=True)  # momentum 0: the running statistics become the batch's
    exact = x.astype(np.float64)
    want_mean, want_var = exact.mean(axis=(0, 2, 3)), exact.var(axis=(0, 2, 3))
    np.testing.assert_allclose(layer.buffers["running_mean"], want_mean, rtol=1e-7)
    np.testing.assert_allclose(layer.buffers["running_var"], want_var, rtol=1e-5)
    rows = exact.transpose(2, 3, 0, 1).reshape(-1, 4)  # (pixels, channels)
    sums, squares = kernels.compiled().shifted_moments(rows, want_mean)
    np.testing.assert_allclose(sums, 0.0, atol=1e-7)
    np.testing.assert_allclose(squares, want_var * (exact.size // 4), rtol=1e-12)


@pytest.mark.parametrize("shape", [(19600, 32), (300, 7), (1, 5), (513, 1)])
def test_compiled_transpose_is_an_exact_copy(shape) -> None:
    a = np.random.default_rng(15).standard_normal(shape).astype(np.float32)
    out = np.empty(shape[::-1], np.float32)
    kernels.compiled().transpose(a, out)
    assert np.array_equal(out, a.T)


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
    kink = max_pool_pass(x, 2)[2]  # the book's argmax rows, (C, OH*OW*N)
    assert len(kink) == 1 and kink[0].shape == (3, 2 * 2 * 2)


# (N, C, H, W, filters, kernel, stride, padding): the presets' convs (one channel, 32
# channels with 'same' padding), strides that skip and leave rows no window reaches.
CONVS = [
    (6, 1, 12, 12, 4, 5, 1, 0),
    (5, 8, 9, 9, 6, 3, 1, 1),
    (4, 3, 11, 10, 5, 3, 2, 1),
    (3, 2, 10, 9, 3, 2, 3, 0),
    (2, 3, 7, 8, 4, (3, 2), 1, 2),
]


def conv_pass(x, filters, kernel, stride, padding, dout_seed=8):
    """A conv2d layer's (out, dx, dW, db) on x, for a fixed random dout, run accel/conv.py's
    blocked way (its gather and sums compiled, or NumPy's statements of them)."""
    layer = built(
        {
            "type": "conv2d",
            "filters": filters,
            "kernel": kernel,
            "stride": stride,
            "padding": padding,
        },
        x.shape[1:],
        x.dtype.type,
    )
    out = accel_conv.forward(layer, x)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape).astype(x.dtype)
    dx = accel_conv.backward(layer, dout)
    return out.copy(), dx.copy(), layer.grads["W"].copy(), layer.grads["b"].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", CONVS)
@pytest.mark.parametrize("block_bytes", [64, conv_blocks.BLOCK_BYTES])  # many blocks, or one
def test_conv_gather_and_sums_compiled_are_the_numpy_bits(
    dtype, shape, block_bytes, monkeypatch
) -> None:
    n, c, h, w, filters, kernel, stride, padding = shape
    monkeypatch.setattr(conv_blocks, "BLOCK_BYTES", block_bytes)
    x = np.random.default_rng(9).standard_normal((n, c, h, w)).astype(dtype)
    fast, slow = both_ways(lambda: conv_pass(x, filters, kernel, stride, padding), monkeypatch)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype == dtype
        assert np.array_equal(a, b)  # a copy, and sums added in the same order


@pytest.mark.parametrize("shape", CONVS)
def test_im2col_and_col2im_compiled_are_the_numpy_bits(shape, monkeypatch) -> None:
    n, c, h, w, _, kernel, stride, padding = shape
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = np.random.default_rng(10).standard_normal((n, c, h, w))
    pad = (padding, padding)
    oh = output_size(h, kernel[0], stride, pad[0])
    ow = output_size(w, kernel[1], stride, pad[1])

    def gathered():  # accel's gather over every output row at once: the whole columns
        cols = np.empty((c * kernel[0] * kernel[1], oh * ow * n))
        conv_blocks.gather(conv_blocks.pixel_major(x, pad), kernel, stride, slice(0, oh), ow, cols)
        return cols

    def summed_back(grads):  # and its sums, into the padded (C, Hp, Wp, N) gradient
        dxp = np.zeros((c, h + 2 * pad[0], w + 2 * pad[1], n))
        conv_blocks.add_patches(dxp, grads, kernel, stride, slice(0, oh), ow)
        return dxp.transpose(3, 0, 1, 2)[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w]

    cols = both_ways(gathered, monkeypatch)
    assert np.array_equal(*cols)
    book = im2col.im2col(x, kernel, stride, pad, ones_row=True)  # the book's whole-batch form
    assert np.array_equal(book[:-1], cols[0])
    assert np.array_equal(book[-1], np.ones(book.shape[1]))  # the bias's row
    grads = np.random.default_rng(11).standard_normal(cols[0].shape)
    summed = both_ways(lambda: summed_back(grads), monkeypatch)
    assert np.array_equal(*summed)
    assert np.array_equal(im2col.col2im(grads, x.shape, kernel, stride, pad), summed[0])
    # Adjointness pins the sums down on their own: <im2col(x), g> = <x, col2im(g)>.
    np.testing.assert_allclose(np.vdot(cols[0], grads), np.vdot(x, summed[0]), rtol=1e-10)


def test_conv_results_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    monkeypatch.setattr(kernels, "_loaded", [])
    kernels.compiled()
    x = np.random.default_rng(12).standard_normal((20, 6, 9, 9)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            kernels.set_threads(threads)
            results.append(conv_pass(x, 5, 3, 1, "same"))
    finally:
        numba.set_num_threads(previous)
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a, b)


def optimizer_run(spec, dtype, steps=6):
    """Parameters and state after `steps` updates with fixed random gradients; one parameter
    is a transposed (not C-contiguous) view, which takes the blocked NumPy path either way."""
    rng = np.random.default_rng(13)
    params = {
        "0.W": rng.standard_normal((40, 300)).astype(dtype),
        "0.b": rng.standard_normal(300).astype(dtype),
        "1.W": rng.standard_normal((30, 20)).astype(dtype).T,
    }
    optimizer = OPTIMIZERS.build(spec)
    for _ in range(steps):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        optimizer.update(params, grads)
    return params, optimizer.state_dict()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "spec",
    [{"type": "adam", "lr": 0.01}, {"type": "adamw", "lr": 0.01, "weight_decay": 0.1}],
)
def test_adam_compiled_is_the_numpy_step_bit_for_bit(spec, dtype, monkeypatch) -> None:
    (fast, fast_state), (slow, slow_state) = both_ways(
        lambda: optimizer_run(spec, dtype), monkeypatch
    )
    assert fast.keys() == slow.keys() and fast_state.keys() == slow_state.keys()
    for key in fast:
        assert fast[key].dtype == dtype and np.array_equal(fast[key], slow[key])
    for key in fast_state:
        assert np.array_equal(fast_state[key], slow_state[key])
    start = optimizer_run(spec, dtype, steps=0)[0]
    assert not np.array_equal(fast["0.W"], start["0.W"])  # the steps did move the weights


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_average_compiled_is_the_numpy_average_bit_for_bit(dtype, monkeypatch) -> None:
    def run():
        rng = np.random.default_rng(14)
        weights = {"0.W": rng.standard_normal((30, 40)).astype(dtype), "0.b": np.zeros(40, dtype)}
        average = WeightAverage(0.99, weights)
        for _ in range(25):
            for value in weights.values():
                value += rng.standard_normal(value.shape).astype(dtype)
            average.update(weights)
        return average.arrays, weights

    (fast, weights), (slow, _) = both_ways(run, monkeypatch)
    for key in fast:
        assert np.array_equal(fast[key], slow[key])
        assert not np.array_equal(fast[key], weights[key])  # an average, not the weights


def test_kernel_choice_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("BPTRAIN_KERNELS", "NumPy")
    assert kernels.choice() == "numpy" and kernels._load("numpy") is None
    monkeypatch.setenv("BPTRAIN_KERNELS", "fortran")
    with pytest.raises(ConfigError, match="BPTRAIN_KERNELS is 'fortran'"):
        kernels.choice()


def test_numpy_choice_never_imports_numba() -> None:
    code = (
        "import sys, numpy as np; from bptrain.accel import kernels;"
        "from bptrain.engine.layers import LAYERS;"
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


@pytest.mark.parametrize(
    ("sgemm", "given", "expected"),
    [(True, None, "None"), (False, None, "PASSIVE"), (False, "ACTIVE", "ACTIVE")],
)
def test_idle_loop_threads_sleep_when_blas_threads_need_the_cores(sgemm, given, expected) -> None:
    # Without NumPy's sgemm, BLAS's own threads run the products, and spinning OpenMP threads
    # steal their cores (2x slower steps): they sleep unless told. With it, the products run
    # on the loops' threads and BLAS on one, nothing competes, and OpenMP's default spinning
    # keeps the threads quick to take the next piece.
    if sgemm and blas.sgemm() is None:
        pytest.skip("NumPy's BLAS has no sgemm bptrain can call")
    hide = "" if sgemm else "blas.sgemm = lambda: None;"
    code = (
        f"import os; from bptrain.accel import blas, kernels; {hide}"
        "print(kernels.compiled() is not None, bool(kernels._products),"
        " os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {"BPTRAIN_KERNELS": "numba", "PATH": ""}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", str(sgemm), expected]


@pytest.mark.parametrize("preset", ["mlp", "cnn"])
def test_a_bad_kernel_choice_is_a_usage_error_for_every_network(preset, idx_folder) -> None:
    """F23: checked when the network is built, not when a layer first asks (an MLP never did)."""
    from cli_helpers import subprocess_env

    data = ["--set", "data.dataset=idx", "--set", f"data.dir={idx_folder}"]
    data += ["--set", "data.validation=100"]
    result = subprocess.run(
        [sys.executable, "-m", "bptrain", "train", preset, *data, "--dry-run"],
        env=subprocess_env() | {"BPTRAIN_KERNELS": "foo"}, capture_output=True, text=True,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2 and result.stdout == ""
    assert len(errors) == 1 and "BPTRAIN_KERNELS is 'foo'" in errors[0], result.stderr
