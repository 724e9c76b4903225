"""Conv and dense products in pieces on the compiled loops' threads (compiled/gemm.py).

The pieces must give the bits of the one-thread path (NumPy's matmul on one BLAS thread), on
any budget of threads: training is then the same on 1, 2 or 3 threads, and a resume exact.
Budgets above the machine's cores still cut the work into that many pieces (the loops run
them one after the other), so these tests split the products on a one-core machine too.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from bptrain.accel import blas, kernels, matmul
from bptrain.engine.layers import im2col
from layer_helpers import built

numba = pytest.importorskip("numba", reason="the fast extra (numba) is not installed")
if blas.sgemm() is None:
    pytest.skip("NumPy's BLAS has no sgemm bptrain can call", allow_module_level=True)


@pytest.fixture
def budget(monkeypatch):
    """set(n): the compiled loops' budget for the test (BLAS on one thread, as --threads 1
    has it, for budget 1); everything is put back afterwards."""
    monkeypatch.setattr(kernels, "_loaded", [])
    assert kernels.compiled() is not None
    previous = (kernels._budget[0], numba.get_num_threads())
    with threadpool_limits(limits=1, user_api="blas"):

        def set_budget(threads: int) -> None:
            kernels.set_threads(threads)
            assert (kernels.products() is not None) == (threads > 1)

        yield set_budget
    kernels._budget[0] = previous[0]
    numba.set_num_threads(previous[1])


@pytest.fixture
def calls(monkeypatch):
    """How many times each compiled_gemm function ran (they still run)."""
    from bptrain.accel.compiled import gemm as compiled_gemm

    counts: dict[str, int] = {}
    for name in ("conv_forward", "conv_weight_grads", "conv_gradients", "gemm_pieces"):
        real = getattr(compiled_gemm, name)

        def counted(*args, _real=real, _name=name):
            counts[_name] = counts.get(_name, 0) + 1
            return _real(*args)

        monkeypatch.setattr(compiled_gemm, name, counted)
    return counts


def conv_pass(x, filters, kernel, padding, first_layer):
    """A conv2d layer's (out, dx or None, dW, db) on x, for a fixed random dout."""
    spec = {"type": "conv2d", "filters": filters, "kernel": kernel, "padding": padding}
    layer = built(spec, x.shape[1:], np.float32)
    layer.skip_input_grad = first_layer
    out = layer.forward(x, train=True)
    dout = np.random.default_rng(8).standard_normal(out.shape).astype(np.float32)
    dx = layer.backward(dout)
    return out.copy(), None if dx is None else dx.copy(), *(g.copy() for g in layer.grads.values())


# (N, C, H, filters, kernel, padding, first layer): cnn-deep's second conv with 5x5 filters
# (its 3x3 ones run Winograd's way, winograd.py; even forward blocks, 2 channel shares of 16
# in the backward), the book's first conv (4 even forward
# blocks, row_blocks' 3 dealt out in the backward), and a batch of 37 whose blocks do not
# start on whole tiles (row_blocks' forward) with channels too few to share (one piece).
CONVS = [
    (100, 32, 14, 64, 5, "same", False),
    (100, 1, 28, 30, 5, 0, True),
    (37, 16, 12, 32, 5, 0, False),
]


@pytest.mark.parametrize("shape", CONVS)
def test_conv_in_pieces_gives_the_one_thread_bits(shape, budget, calls) -> None:
    n, c, h, filters, kernel, padding, first = shape
    x = np.random.default_rng(2).standard_normal((n, c, h, h)).astype(np.float32)
    budget(1)
    alone = conv_pass(x, filters, kernel, padding, first)
    assert not calls  # budget 1: NumPy's matmul
    for threads in (2, 3):
        budget(threads)
        pieces = conv_pass(x, filters, kernel, padding, first)
        for a, b in zip(alone, pieces, strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert calls["conv_forward"] == 2
    if first:
        assert calls["conv_weight_grads"] == 2
    elif c == 32:
        assert calls["conv_gradients"] == 2
    else:
        assert "conv_gradients" not in calls  # no whole-tile share: the one-thread loop


def test_conv_in_pieces_matches_a_float64_convolution(budget) -> None:
    """Not only the same as the loop: right. Against the whole-batch im2col in float64."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100, 32, 14, 14))
    budget(2)
    out, dx, dW, db = conv_pass(x.astype(np.float32), 64, 5, "same", False)
    layer = built({"type": "conv2d", "filters": 64, "kernel": 5, "padding": "same"}, x.shape[1:])
    cols = im2col.im2col(x, (5, 5), 1, (2, 2))  # (C*25, 14*14*N), pixel-major
    W = layer.params["W"].reshape(64, -1).astype(np.float64)
    expected = (W @ cols).reshape(64, 14, 14, 100).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    dout = np.random.default_rng(8).standard_normal(out.shape)
    d2 = dout.transpose(1, 2, 3, 0).reshape(64, -1)
    np.testing.assert_allclose(dW.reshape(64, -1), d2 @ cols.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, d2.sum(axis=1), rtol=1e-4, atol=1e-3)
    dx_expected = im2col.col2im(W.T @ d2, x.shape, (5, 5), 1, (2, 2))
    np.testing.assert_allclose(dx, dx_expected, rtol=1e-4, atol=1e-3)


# (rows, inner, columns, split): cnn-deep's dense layer, the book's, speedrun's (its 64
# columns split in 3 would leave a piece below blas.MIN_PIECE, the bits, and go in 2), the mlp
# preset's first layer, and 784-100-100-10's second, too small to split at all.
DENSE = [
    (100, 3136, 256, True),
    (100, 4320, 100, True),
    (100, 512, 64, True),
    (100, 784, 50, True),
    (100, 100, 100, False),
]


@pytest.mark.parametrize("shape", DENSE)
def test_dense_products_in_pieces_give_the_one_thread_bits(shape, budget, calls) -> None:
    m, k, n, split = shape
    rng = np.random.default_rng(6)
    x = rng.standard_normal((m, k)).astype(np.float32)
    W = rng.standard_normal((k, n)).astype(np.float32)
    dout = rng.standard_normal((m, n)).astype(np.float32)
    budget(1)
    # The affine layer's three products, with its operands' layouts (x.T and W.T transposed).
    alone = [x @ W, x.T @ dout, dout @ W.T]
    for threads in (2, 3):
        budget(threads)
        dW = np.empty((k, n), np.float32)
        pieces = [matmul.matmul(x, W), matmul.matmul(x.T, dout, out=dW), matmul.matmul(dout, W.T)]
        for a, b in zip(alone, pieces, strict=True):
            assert np.array_equal(a, b)
    assert calls.get("gemm_pieces", 0) == (6 if split else 0)


def test_products_of_many_shapes_in_pieces_give_the_one_thread_bits(budget, calls) -> None:
    # Shapes around the lines the bits depend on: pieces just above the small kernels' 100^3,
    # wholes on either side of OpenBLAS's direct-sgemm line (7.3 M), odd column counts, and
    # all three operand layouts the affine layer uses.
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(60):
        m, n = (int(rng.choice(sizes)) for sizes in ([32, 50, 96, 100, 160, 256, 400],) * 2)
        k = int(rng.choice([50, 100, 200, 512, 784, 1000]))
        layout = int(rng.integers(3))  # x @ W, x.T @ dout, dout @ W.T
        a = rng.standard_normal((k, m) if layout == 1 else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if layout == 2 else (k, n)).astype(np.float32)
        cases.append((a.T if layout == 1 else a, b.T if layout == 2 else b))
    budget(1)
    alone = [a @ b for a, b in cases]
    for threads in (2, 3):
        budget(threads)
        for (a, b), expected in zip(cases, alone, strict=True):
            assert np.array_equal(matmul.matmul(a, b), expected), (a.shape, b.shape, threads)
    assert calls.get("gemm_pieces", 0) > 60  # most of them did split


def test_column_pieces_start_on_whole_tiles_and_keep_above_the_small_kernels() -> None:
    edges = matmul._edges(100 * 3136, 256, 3)
    assert list(edges) == [0, 80, 176, 256]
    assert all(e % blas.TILE == 0 for e in edges)
    # speedrun's 64 columns of 51,200 multiply-adds: 3 pieces would have one of 16 columns
    # (0.8 M, below the small kernels' line), so they go in 2.
    assert list(matmul._edges(100 * 512, 64, 3)) == [0, 32, 64]
    assert list(matmul._edges(100 * 100, 100, 3)) == [0, 100]  # 784-100-100-10's second: no split


def test_blas_runs_on_one_thread_while_the_loops_run_the_products(budget) -> None:
    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        budget(2)
        assert blas_threads() == {1}


def test_float64_products_take_numpy(budget, calls) -> None:
    """The pieces call sgemm: other dtypes (gradient checks run float64) take NumPy."""
    budget(2)
    x = np.random.default_rng(7).standard_normal((100, 16, 10, 10))
    layer = built({"type": "conv2d", "filters": 32, "kernel": 3}, x.shape[1:])
    layer.backward(layer.forward(x, train=True))
    a = np.ones((100, 3136))
    np.testing.assert_array_equal(matmul.matmul(a, np.ones((3136, 256))), 3136.0)
    assert not calls


def trains_alike_on_one_and_two_threads(tmp_path, source, *settings) -> None:
    """`bptrain train SOURCE` as real processes with --threads 1 and --threads 2: the same
    records (timing and the checkpoint's name aside) and the same bits in every array."""
    import subprocess
    import sys

    from cli_helpers import records, subprocess_env, without_timing

    runs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.npz"
        result = subprocess.run(
            [sys.executable, "-m", "bptrain", "-q", "train", source, *settings, "--threads",
             str(threads), "--out", out],
            capture_output=True, env=subprocess_env(), timeout=120, check=True,
        )  # fmt: skip
        runs.append((without_timing(records(result.stdout.decode())), np.load(out)))
    (a, weights_a), (b, weights_b) = runs
    for record in (*a, *b):
        record.pop("checkpoint", None)  # t1.npz and t2.npz
    assert a == b
    assert weights_a.files == weights_b.files
    arrays = [name for name in weights_a.files if name != "__meta__"]  # __meta__: run info
    assert any(name.startswith("param/") for name in arrays)
    for name in arrays:
        assert np.array_equal(weights_a[name], weights_b[name]), name


def test_training_on_two_threads_gives_the_one_thread_run(tmp_path, idx_folder) -> None:
    """End to end, real processes: `--threads 2` trains a conv net to the same bits as
    `--threads 1` (the second conv in Winograd's blocks, the first conv's forward rows and
    the dense layer's columns in pieces)."""
    from cli_helpers import small_config, write_config

    config = small_config(idx_folder, epochs=1, batch_size=100)
    config["model"]["layers"] = [
        {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same"},
        {"type": "relu"},
        {"type": "max_pool2d", "size": 2},
        {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same"},
        {"type": "relu"},
        {"type": "max_pool2d", "size": 2},
        {"type": "flatten"},
        {"type": "affine", "units": 256},
        {"type": "relu"},
        {"type": "affine", "units": 10},
    ]
    trains_alike_on_one_and_two_threads(tmp_path, write_config(tmp_path / "conv.yaml", config))


@pytest.mark.parametrize("preset", ["mlp", "mlp-deep"])
def test_the_mlp_presets_train_to_the_same_bits_on_two_threads(tmp_path, idx_folder, preset):
    """The same for the MLP presets (F3): their first products ran on BLAS's own threads
    when the compiled loops loaded lazily (mlp never loaded them, mlp-deep at its first
    BatchNorm), so --threads 2 gave other bits. mlp-deep brings BatchNorm, dropout and Adam."""
    data = ["--set", "data.dataset=idx", "--set", f"data.dir={idx_folder}"]
    settings = ["--set", "data.validation=100", "--set", "train.epochs=2"]
    trains_alike_on_one_and_two_threads(tmp_path, preset, *data, *settings)
