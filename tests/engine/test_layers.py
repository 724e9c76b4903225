"""Every registered layer and loss: gradients, dtypes, no mutation; the seed as reference."""

import warnings
from pathlib import Path

import numpy as np
import pytest

from bptrain.custom.source import import_file
from bptrain.engine import gradcheck
from bptrain.engine.layers import LAYERS, Affine, Flatten, Relu, Sigmoid
from bptrain.engine.losses import LOSSES, IdentityWithMSE, SoftmaxWithLoss
from bptrain.engine.network import Network
from bptrain.errors import ConfigError

# The seed's classes as its notes write them, flaws included: the reference ours must agree
# with wherever the seed is right.
seed = import_file(Path(__file__).resolve().parents[2] / "examples" / "seed_layers.py")


def example(name):
    ex = LAYERS.get(name).example
    assert ex, f"layer {name!r} has no `example`: the registry gradient check needs one"
    return ex


@pytest.mark.parametrize("name", LAYERS.names())
def test_every_registered_layer_passes_the_float64_gradient_check(name):
    ex = example(name)
    report = gradcheck.check_layer(ex["spec"], tuple(ex["input_shape"]), batch=ex.get("batch", 4))
    assert report.parameters, "nothing was checked"
    assert all(p.checked > 0 for p in report.parameters)
    assert report.ok, report.to_record()


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_passes_the_float64_gradient_check(name):
    report = gradcheck.check_loss({"type": name}, classes=5)
    assert report.ok, report.to_record()


def _run_layer(name, dtype, seed=0):
    ex = example(name)
    rng = np.random.default_rng(seed)
    layer = LAYERS.build(ex["spec"])
    Network([layer], SoftmaxWithLoss(), tuple(ex["input_shape"]), rng=rng, dtype=dtype)
    layer.skip_input_grad = False  # the network spares its first layer dx; here we want it
    batch = ex.get("batch", 4)
    x = rng.standard_normal((batch, *ex["input_shape"])).astype(dtype)
    out = layer.forward(x, train=True)
    dout = rng.standard_normal(out.shape).astype(dtype)
    return layer, x, out, dout


@pytest.mark.parametrize("name", LAYERS.names())
def test_float32_in_gives_float32_out_and_gradients(name):
    layer, x, out, dout = _run_layer(name, np.float32)
    dx = layer.backward(dout)
    assert out.dtype == np.float32
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for key in layer.params:
        assert layer.params[key].dtype == np.float32, key
        assert layer.grads[key].dtype == np.float32, key
    assert layer.forward(x, train=False).dtype == np.float32


@pytest.mark.parametrize("name", LAYERS.names())
def test_backward_never_modifies_its_argument(name):
    layer, _, _, dout = _run_layer(name, np.float64)
    before = dout.copy()
    layer.backward(dout)
    assert np.array_equal(dout, before)


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_keep_float32(name):
    rng = np.random.default_rng(0)
    loss = LOSSES.build(name)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    value = loss.forward(x, rng.integers(0, 4, 6))
    assert value.dtype == np.float32
    assert loss.backward().dtype == np.float32


def test_seed_relu_backward_mutates_and_ours_does_not():
    x = np.array([[1.0, -2.0], [-0.5, 3.0]])
    dout = np.ones_like(x)
    theirs = seed.Relu()
    theirs.forward(x)
    shared = dout.copy()
    expected = theirs.backward(shared)
    assert not np.array_equal(shared, dout)  # the seed's flaw: the caller's array was zeroed
    ours = Relu()
    assert np.array_equal(ours.forward(x), theirs.forward(x))
    shared = dout.copy()
    assert np.array_equal(ours.backward(shared), expected)
    assert np.array_equal(shared, dout)


def test_sigmoid_is_stable_where_the_seeds_overflows():
    x = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]], dtype=np.float32)
    with pytest.warns(RuntimeWarning):
        seed.Sigmoid().forward(x)
    layer = Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert y[0, 0] == 0 and y[0, 2] == 0.5 and y[0, -1] == 1
    normal = np.linspace(-8, 8, 33).reshape(1, -1)
    np.testing.assert_allclose(
        Sigmoid().forward(normal), seed.Sigmoid().forward(normal), rtol=1e-12
    )


def test_softmax_with_loss_is_stable_and_matches_the_seed():
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]], dtype=np.float32)
    layer = SoftmaxWithLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = layer.forward(x, np.array([1, 1]))
        dx = layer.backward()
    assert np.isfinite(loss) and loss == pytest.approx(1000.0)
    assert np.all(np.isfinite(dx))
    rng = np.random.default_rng(3)
    scores, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    onehot = np.eye(4)[labels]
    theirs = seed.SoftmaxWithLoss()
    ours = SoftmaxWithLoss()
    assert ours.forward(scores, onehot) == pytest.approx(theirs.forward(scores, onehot), rel=1e-6)
    np.testing.assert_allclose(ours.backward(), theirs.backward(), rtol=1e-12)


def test_integer_labels_and_one_hot_give_the_same_loss_and_gradient():
    rng = np.random.default_rng(1)
    scores, labels = rng.standard_normal((6, 10)), rng.integers(0, 10, 6)
    for cls in (SoftmaxWithLoss, IdentityWithMSE):
        a, b = cls(), cls()
        assert a.forward(scores, labels) == pytest.approx(b.forward(scores, np.eye(10)[labels]))
        np.testing.assert_allclose(a.backward(), b.backward())


def test_loss_gradients_are_y_minus_t_over_n():
    rng = np.random.default_rng(2)
    scores, labels = rng.standard_normal((4, 3)), rng.integers(0, 3, 4)
    t = np.eye(3)[labels]
    softmax = SoftmaxWithLoss()
    softmax.forward(scores, labels)
    np.testing.assert_allclose(softmax.backward(), (seed.softmax(scores) - t) / 4)
    mse = IdentityWithMSE()
    assert mse.forward(scores, t) == pytest.approx(0.5 * np.sum((scores - t) ** 2) / 4)
    np.testing.assert_allclose(mse.backward(), (scores - t) / 4)
    np.testing.assert_allclose(softmax.backward(dout=2.0), 2 * (seed.softmax(scores) - t) / 4)


def test_affine_used_the_seed_way_matches_the_seed():
    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((12, 5)), rng.standard_normal(5)
    x, dout = rng.standard_normal((3, 2, 2, 3)), rng.standard_normal((3, 5))
    ours, theirs = Affine(W, b), seed.Affine(W, b)
    np.testing.assert_allclose(ours.forward(x), theirs.forward(x))
    dx = ours.backward(dout)
    np.testing.assert_allclose(dx, theirs.backward(dout))
    assert dx.shape == x.shape
    np.testing.assert_allclose(ours.grads["W"], theirs.dW)
    np.testing.assert_allclose(ours.db, theirs.db)


def test_affine_and_flatten_shapes():
    rng = np.random.default_rng(0)
    layer = Affine(units=7)
    assert layer.build((2, 3, 4), rng, np.float32) == (7,)
    assert layer.params["W"].shape == (24, 7) and layer.params["b"].shape == (7,)
    assert Flatten().build((2, 3, 4), rng, np.float32) == (24,)
    with pytest.raises(ConfigError, match="units"):
        Affine()
    with pytest.raises(ConfigError, match="rows"):
        Affine(np.zeros((3, 2))).build((4,), rng, np.float32)


def test_initializers_draw_the_documented_scale():
    rng = np.random.default_rng(0)
    for init, std in (
        ("he", np.sqrt(2 / 400)),
        ("xavier", np.sqrt(2 / 600)),
        ({"type": "normal", "std": 0.05}, 0.05),
    ):
        layer = Affine(units=200, init=init)
        layer.build((400,), rng, np.float32)
        assert layer.params["W"].std() == pytest.approx(std, rel=0.02)
        assert layer.params["W"].dtype == np.float32
        assert not layer.params["b"].any()


def test_gradcheck_catches_a_wrong_backward():
    class Broken(Sigmoid):
        def backward(self, dout):
            return dout * self.out  # forgot (1 - y)

    report = gradcheck.check_layer(Broken(), (5,))
    assert not report.ok and report.worst.name == "input"
    assert report.max_relative_error > 1e-2
