"""Gradient checking as a library: relative error, kinks, reports."""

import numpy as np

from bptrain.engine import gradcheck
from bptrain.engine.layers import Affine, Relu
from bptrain.engine.losses import SoftmaxWithLoss
from bptrain.engine.network import Network


def test_relative_error_formula():
    a, n = np.array([1.0, 0.0, 1e-9]), np.array([1.1, 0.0, 2e-9])
    err = gradcheck.relative_error(a, n, tiny=1e-6)
    np.testing.assert_allclose(err, [0.1 / 2.1, 0.0, 1e-9 / 1e-6])


def kinked_network():
    """A ReLU unit whose pre-activation sits 1e-4 from zero: inside a 1e-3 step."""
    W = np.array([[1.0, -1.0], [0.5, 2.0]])
    b = np.array([0.0, 0.0])
    layers = [Affine(W, b), Relu(), Affine(np.eye(2) * 3, np.zeros(2))]
    net = Network(layers, SoftmaxWithLoss(), (2,), dtype=np.float64)
    x = np.array([[1e-4, 0.0], [1.0, 1.0]])  # sample 0, unit 0: pre-activation exactly 1e-4
    return net, x, np.array([0, 1])


def test_a_step_across_a_relu_kink_is_shrunk_instead_of_reported():
    net, x, t = kinked_network()
    report = gradcheck.check_network(net, x, t, coords=8, rng=np.random.default_rng(0))
    assert report.ok, report.to_record()
    bias = next(p for p in report.parameters if p.name == "0.b")
    assert bias.checked == 2


def test_without_the_kink_watch_the_same_step_would_be_wrong():
    net, x, t = kinked_network()
    net.loss(x, t, train=True)
    net.backward()
    analytic = net.grads["0.b"][0]  # the bias moves the pre-activation 1e-4 across zero
    x64 = x.copy()

    def loss():
        return net.loss(x64, t, train=True)

    crossing, _ = gradcheck.numerical_derivative(loss, net.params["0.b"], (0,), eps=1e-3)
    assert gradcheck.relative_error(analytic, crossing) > 1e-3
    net.loss(x64, t, train=True)
    watch = gradcheck.KinkWatch(net)

    def watched():
        value = loss()
        watch.observe()
        return value

    value, smooth = gradcheck.numerical_derivative(watched, net.params["0.b"], (0,), 1e-3, watch)
    assert smooth and gradcheck.relative_error(analytic, value) < 1e-6


def test_report_record_shape():
    net, x, t = kinked_network()
    record = gradcheck.check_network(net, x, t, coords=3).to_record()
    assert record["event"] == "gradcheck" and record["ok"] is True
    assert [p["name"] for p in record["parameters"]] == ["0.W", "0.b", "2.W", "2.b", "input"]
    assert all(
        {"name", "shape", "max_relative_error", "worst_index"} <= set(p)
        for p in record["parameters"]
    )


def test_a_bias_right_before_batchnorm_has_zero_gradient_and_passes():
    """BatchNorm removes any constant shift, so that bias's gradient is exactly 0 while the
    numerical one is rounding noise; the check must not call that a failure."""
    specs = [
        {"type": "affine", "units": 6},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "affine", "units": 3},
    ]
    rng = np.random.default_rng(0)
    net = Network.from_specs(specs, (5,), rng=rng, dtype=np.float64)
    x, t = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    report = gradcheck.check_network(net, x, t, coords=6, rng=rng)
    assert np.abs(net.grads["0.b"]).max() < 1e-12
    assert report.ok, report.to_record()
