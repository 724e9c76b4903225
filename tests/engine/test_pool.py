"""Max and average pooling: against loops, ties, the fast disjoint path, kinks, gradients."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.accel import kernels
from bptrain.engine.layers import LAYERS
from bptrain.errors import ConfigError
from layer_helpers import LAYOUTS, built, in_layout


def naive_pool(x: np.ndarray, size: int, stride: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(out, dx for dout = ones-weighted by position) of max/avg pooling by loops."""
    n, c, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    out = np.zeros((n, c, oh, ow))
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    dx = np.zeros_like(x)
    for s in range(n):
        for k in range(c):
            for i in range(oh):
                for j in range(ow):
                    rows, cols = (
                        slice(i * stride, i * stride + size),
                        slice(j * stride, j * stride + size),
                    )
                    patch = x[s, k, rows, cols]
                    if mode == "max":
                        out[s, k, i, j] = patch.max()
                        a, b = np.unravel_index(np.argmax(patch), patch.shape)  # first maximum
                        dx[s, k, rows, cols][a, b] += dout[s, k, i, j]
                    else:
                        out[s, k, i, j] = patch.mean()
                        dx[s, k, rows, cols] += dout[s, k, i, j] / size**2
    return out, dx


# --- pooling -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    ("size", "stride", "hw"), [(2, 2, (6, 4)), (3, 2, (7, 6)), (2, 1, (4, 5)), (2, 3, (7, 7))]
)
def test_pooling_matches_naive_loops(mode: str, size: int, stride: int, hw: tuple) -> None:
    x = np.random.default_rng(6).standard_normal((2, 3, *hw))
    pool = built({"type": f"{mode}_pool2d", "size": size, "stride": stride}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, size, stride, mode)
    np.testing.assert_allclose(out, expected_out, rtol=1e-14)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    np.testing.assert_allclose(pool.backward(dout), expected_dx, rtol=1e-14)


def test_max_pool_ties_have_one_winner() -> None:
    # After a ReLU whole windows are 0: the gradient must go to one entry, not to all four.
    pool = built({"type": "max_pool2d"}, (1, 4, 4))
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, 3.0], [3.0, 3.0]]
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    assert dx.sum() == 4
    assert dx[0, 0, 0, 0] == dx[0, 0, 2, 3] == 1  # the first maximum in row-major order wins


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hw", [(6, 6), (7, 5), (5, 8)])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_disjoint_max_pool_matches_naive_loops_with_ties(size: int, hw: tuple, layout: str) -> None:
    # stride == size (on a pixel-major input with the compiled loops: accel/pool.py); values
    # in {-1, 0, 1} tie in most windows, odd sizes leave rows/columns unpooled.
    x = np.random.default_rng(9).integers(-1, 2, (3, 2, *hw)).astype(float)
    x = in_layout(x, layout)
    pool = built({"type": "max_pool2d", "size": size}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, size, size, "max")
    assert out.flags.c_contiguous  # what flatten needs to stay a view
    np.testing.assert_array_equal(out, expected_out)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    dx = pool.backward(in_layout(dout, layout))
    np.testing.assert_array_equal(dx, expected_dx)
    assert dx.strides == x.strides  # the input's layout, so the conv below gets a view


def test_disjoint_max_pool_agrees_with_the_general_path(monkeypatch) -> None:
    # The fast path (accel/pool.py, with the compiled loops) must reproduce the book's
    # im2col/argmax/col2im, ties included.
    rng = np.random.default_rng(10)
    x = in_layout(rng.integers(0, 3, (4, 3, 9, 7)).astype(np.float32), "pixel-major")
    pool = built({"type": "max_pool2d", "size": 3}, x.shape[1:], np.float32)
    out, dx = pool.forward(x), pool.backward(np.ones((4, 3, 3, 2), np.float32))
    monkeypatch.setattr(kernels, "_loaded", [None])  # the book's way, as without numba
    general_out = pool.forward(x)
    general_dx = pool.backward(np.ones((4, 3, 3, 2), np.float32))
    assert pool.fast is None
    np.testing.assert_array_equal(out, general_out)
    np.testing.assert_array_equal(dx, general_dx)


def test_max_pool_windows_with_more_than_256_offsets() -> None:
    # 17x17 windows have 289 kernel offsets: the winner's index needs two bytes.
    x = np.random.default_rng(11).standard_normal((2, 1, 18, 19))
    pool = built({"type": "max_pool2d", "size": 17, "stride": 1}, x.shape[1:])
    out = pool.forward(x)
    expected_out, expected_dx = naive_pool(x, 17, 1, "max")
    np.testing.assert_array_equal(out, expected_out)
    dout = np.arange(1, out.size + 1, dtype=float).reshape(out.shape)
    np.testing.assert_array_equal(pool.backward(dout), expected_dx)


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 2)])
def test_max_pool_kink_state_changes_exactly_when_a_window_changes_winner(
    size: int, stride: int
) -> None:
    # Gradient checks use it to spot nudges across a kink (a near-tie between window entries).
    x = np.random.default_rng(12).standard_normal((2, 2, 7, 7))
    x[0, 1, 0, 0], x[0, 1, 0, 1] = 5.0, 5.0 - 1e-9  # a near tie that wins its window
    pool = built({"type": "max_pool2d", "size": size, "stride": stride}, x.shape[1:])

    def state(values: np.ndarray) -> list[np.ndarray]:
        pool.forward(values)
        return [a.copy() for a in pool.kink_state()]

    before = state(x)
    small, flip = x.copy(), x.copy()
    small[0, 1, 0, 1] -= 1e-6  # the winner stays
    flip[0, 1, 0, 1] += 2e-9  # the other entry now wins
    assert all(np.array_equal(a, b) for a, b in zip(state(small), before, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(state(flip), before, strict=True))


def test_pooling_stride_defaults_to_size() -> None:
    pool = LAYERS.build({"type": "max_pool2d", "size": 3})
    assert pool.stride == 3
    assert pool.build((2, 9, 10), np.random.default_rng(), np.float32) == (2, 3, 3)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pooling_build_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="bigger than"):
        built({"type": name, "size": 3}, (1, 2, 5))
    with pytest.raises(ConfigError, match="height, width"):
        built({"type": name}, (12,))
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": name, "stride": 0})
    assert info.value.path == "stride"
