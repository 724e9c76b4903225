"""Tanh and LeakyRelu: closed forms, gradient checks, dtypes, no mutation of dout."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.engine.gradcheck import check_layer
from bptrain.engine.layers import LAYERS, LeakyRelu, Tanh
from bptrain.errors import ConfigError


def test_tanh_forward_and_backward_closed_form() -> None:
    x = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0]])
    layer = Tanh()
    np.testing.assert_allclose(layer.forward(x), np.tanh(x))
    dout = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_allclose(layer.backward(dout), dout / np.cosh(x) ** 2)


def test_tanh_saturates_without_overflow() -> None:
    layer = Tanh()
    with np.errstate(all="raise"):
        out = layer.forward(np.array([[-1e4, 1e4]], dtype=np.float32))
        dx = layer.backward(np.ones((1, 2), dtype=np.float32))
    assert out.tolist() == [[-1.0, 1.0]]
    assert dx.tolist() == [[0.0, 0.0]]


def test_leaky_relu_forward_and_backward_closed_form() -> None:
    layer = LAYERS.build({"type": "leaky_relu", "alpha": 0.2})
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    np.testing.assert_allclose(layer.forward(x), [[-0.4, -0.1, 0.0, 0.5, 2.0]])
    dx = layer.backward(np.full((1, 5), 10.0))
    np.testing.assert_allclose(dx, [[2.0, 2.0, 2.0, 10.0, 10.0]])


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.5, 0.999])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_is_where_bit_for_bit(alpha: float, dtype: type) -> None:
    # The layer multiplies by a slope of exactly 1 or alpha; it must agree with the textbook
    # np.where form on every value, signed zeros, infinities and NaN included.
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((2, 3, 40)).astype(dtype)
    x[0, :8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 3.0]
    dout[0, :8] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, np.inf, -np.inf]
    a = dtype(alpha)
    layer = LAYERS.build({"type": "leaky_relu", "alpha": alpha})
    with np.errstate(invalid="ignore"):
        out, dx = layer.forward(x), layer.backward(dout)
        expected_out = np.where(x > 0, x, x * a)
        expected_dx = np.where(x > 0, dout, dout * a)
    for got, expected in [(out, expected_out), (dx, expected_dx)]:
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


def test_leaky_relu_kink_state_flips_at_zero() -> None:
    layer = LAYERS.build({"type": "leaky_relu", "alpha": 0.1})
    layer.forward(np.array([[-1e-9, 2.0]]))
    before = layer.kink_state()[0].copy()
    layer.forward(np.array([[-2e-9, 3.0]]))
    np.testing.assert_array_equal(layer.kink_state()[0], before)
    layer.forward(np.array([[1e-9, 2.0]]))
    assert not np.array_equal(layer.kink_state()[0], before)


def test_leaky_relu_default_alpha() -> None:
    layer = LAYERS.build("leaky_relu")
    assert layer.alpha == 0.01
    assert layer.forward(np.array([[-100.0]])).tolist() == [[-1.0]]


@pytest.mark.parametrize("alpha", [-0.1, 1.0])
def test_leaky_relu_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "leaky_relu", "alpha": alpha})
    assert info.value.path == "alpha"


@pytest.mark.parametrize("cls", [Tanh, LeakyRelu])
def test_example_gradient_check(cls: type) -> None:
    report = check_layer(cls.example["spec"], cls.example["input_shape"])
    assert report.ok, report.to_record()


@pytest.mark.parametrize("spec", ["tanh", {"type": "leaky_relu", "alpha": 0.3}])
def test_float32_and_dout_untouched(spec: str | dict) -> None:
    rng = np.random.default_rng(0)
    layer = LAYERS.build(spec)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dout = rng.standard_normal((4, 6)).astype(np.float32)
    kept = dout.copy()
    out = layer.forward(x, train=True)
    dx = layer.backward(dout)
    assert out.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(dout, kept)
    assert dx is not dout
