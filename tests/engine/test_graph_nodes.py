"""The seed's shop examples, computed with the seed's MulLayer and AddLayer."""

import numpy as np
import pytest

from bptrain.engine.layers import AddLayer, MulLayer


def test_apples_with_tax():
    apple, count, tax = 100, 2, 1.1
    apple_layer, tax_layer = MulLayer(), MulLayer()
    price = tax_layer.forward(apple_layer.forward(apple, count), tax)
    dapple_price, dtax = tax_layer.backward(1)
    dapple, dcount = apple_layer.backward(dapple_price)
    assert price == pytest.approx(220)
    assert dapple == pytest.approx(2.2)
    assert dcount == pytest.approx(110)
    assert dtax == pytest.approx(200)


def test_apples_and_oranges_with_tax():
    apple, apple_count, orange, orange_count, tax = 100, 2, 150, 3, 1.1
    mul_apple, mul_orange, add_fruit, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()
    apple_price = mul_apple.forward(apple, apple_count)
    orange_price = mul_orange.forward(orange, orange_count)
    price = mul_tax.forward(add_fruit.forward(apple_price, orange_price), tax)
    dall, dtax = mul_tax.backward(1)
    dapple_price, dorange_price = add_fruit.backward(dall)
    dorange, dorange_count = mul_orange.backward(dorange_price)
    dapple, dapple_count = mul_apple.backward(dapple_price)
    assert price == pytest.approx(715)
    assert (dapple, dapple_count) == (pytest.approx(2.2), pytest.approx(110))
    assert (dorange, dorange_count) == (pytest.approx(3.3), pytest.approx(165))
    assert dtax == pytest.approx(650)


def test_nodes_work_on_arrays_and_match_numerical_derivatives():
    rng = np.random.default_rng(0)
    x, y, dout = (
        rng.standard_normal((3, 4)),
        rng.standard_normal((3, 4)),
        rng.standard_normal((3, 4)),
    )
    mul, add = MulLayer(), AddLayer()
    np.testing.assert_allclose(mul.forward(x, y), x * y)
    dx, dy = mul.backward(dout)
    np.testing.assert_allclose(dx, dout * y)
    np.testing.assert_allclose(dy, dout * x)
    assert np.array_equal(add.forward(x, y), x + y)
    dx, dy = add.backward(dout)
    assert np.array_equal(dx, dout) and np.array_equal(dy, dout)
    dx[0, 0] += 1  # the add node hands out its own arrays, not the caller's
    assert not np.array_equal(dx, dout)
    eps = 1e-6
    numeric = ((x[0, 0] + eps) * y[0, 0] - (x[0, 0] - eps) * y[0, 0]) / (2 * eps)
    assert mul.backward(np.ones_like(x))[0][0, 0] == pytest.approx(numeric)
