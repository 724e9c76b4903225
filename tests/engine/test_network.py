"""Network: shape inference, named views, prediction, loss, accuracy, backward."""

import math

import numpy as np
import pytest

from bptrain.engine.network import Network
from bptrain.engine.optimizers import SGD
from bptrain.errors import ConfigError

MLP = [
    {"type": "flatten"},
    {"type": "affine", "units": 50, "init": {"type": "normal", "std": 0.01}},
    {"type": "relu"},
    {"type": "affine", "units": 10, "init": {"type": "normal", "std": 0.01}},
]


def mlp(seed=0, dtype=np.float32):
    return Network.from_specs(
        MLP, (1, 28, 28), rng=np.random.default_rng(seed), dtype=dtype, num_classes=10
    )


def test_shapes_are_inferred_layer_by_layer():
    net = mlp()
    assert net.shapes == [(784,), (50,), (50,), (10,)]
    assert sorted(net.params) == ["1.W", "1.b", "3.W", "3.b"]
    assert net.params["1.W"].shape == (784, 50)


def test_a_bad_stack_fails_at_build_time_naming_the_layer():
    specs = [{"type": "flatten"}, {"type": "affine", "units": 100}]
    with pytest.raises(ConfigError) as info:
        Network.from_specs(specs, (1, 28, 28), num_classes=10)
    assert info.value.path == "model.layers[1]" and "10 classes" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Network.from_specs(
            [{"type": "affine", "units": 10}, {"type": "relu"}, {"type": "nope"}],
            (4,),
            num_classes=10,
        )
    assert info.value.path == "model.layers[2].type"


def test_named_views_are_the_layers_own_arrays():
    net = mlp()
    assert net.params["1.W"] is net.layers[1].params["W"]
    assert net.grads["3.b"] is net.layers[3].grads["b"]
    x = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)
    net.gradient(x, np.arange(5))
    assert net.grads["1.W"] is net.layers[1].grads["W"] and net.grads["1.W"].any()
    before = net.params["3.W"].copy()
    SGD(lr=0.5).update(net.params, net.grads)
    assert net.layers[3].params["W"] is net.params["3.W"]
    assert not np.array_equal(net.layers[3].params["W"], before)


def test_initial_loss_of_a_small_std_network_is_ln10():
    rng = np.random.default_rng(2)
    x = rng.random((200, 1, 28, 28), dtype=np.float32)
    loss = mlp().loss(x, rng.integers(0, 10, 200))
    assert abs(loss - math.log(10)) < 0.05


def test_predict_returns_scores_not_probabilities_and_accuracy_uses_argmax():
    net = mlp()
    x = np.random.default_rng(3).random((7, 1, 28, 28), dtype=np.float32)
    scores = net.predict(x)
    assert scores.shape == (7, 10) and scores.dtype == np.float32
    assert not np.allclose(scores.sum(axis=1), 1)
    labels = scores.argmax(axis=1)
    assert net.accuracy(x, labels) == 1.0
    assert net.accuracy(x, np.eye(10)[labels]) == 1.0
    assert net.accuracy(x, (labels + 1) % 10) == 0.0


def test_backward_gives_the_input_gradient_only_when_asked():
    net = mlp(dtype=np.float64)
    x = np.random.default_rng(4).random((3, 1, 28, 28))
    net.loss(x, np.array([1, 2, 3]), train=True)
    assert net.backward() is None  # the first layers' input gradient is nobody's business
    net.loss(x, np.array([1, 2, 3]), train=True)
    dx = net.backward(input_grad=True)
    assert dx.shape == x.shape and dx.any()


def test_a_network_overfits_twenty_samples():
    rng = np.random.default_rng(5)
    x = rng.random((20, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, 20)
    net = Network.from_specs(
        [
            {"type": "flatten"},
            {"type": "affine", "units": 64},
            {"type": "relu"},
            {"type": "affine", "units": 10},
        ],
        (1, 28, 28),
        rng=rng,
    )
    opt = SGD(lr=0.1)
    for _ in range(300):
        net.gradient(x, t)
        opt.update(net.params, net.grads)
    assert net.accuracy(x, t) == 1.0
    assert net.loss(x, t) < 0.05


def test_find_nonfinite_names_the_first_bad_layer():
    net = mlp()
    net.params["3.W"][0, 0] = np.nan
    x = np.ones((2, 1, 28, 28), dtype=np.float32)
    assert net.find_nonfinite(x, np.array([0, 1])) == "the output of layer 3 (affine)"


def test_relu_before_max_pool_runs_after_it_with_identical_results():
    specs = [
        {"type": "conv2d", "filters": 4, "kernel": 3},
        {"type": "relu"},
        {"type": "max_pool2d", "size": 2},
        {"type": "flatten"},
        {"type": "affine", "units": 10},
    ]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 9, 9)).astype(np.float32)
    t = rng.integers(0, 10, 6)
    fast = Network.from_specs(specs, (1, 9, 9), rng=np.random.default_rng(1))
    assert fast.order == [0, 2, 1, 3, 4]
    plain = Network.from_specs(specs, (1, 9, 9), rng=np.random.default_rng(1))
    plain.order = list(range(5))  # the configured order, as the seed would run it
    plain.plan()
    assert [type(layer).__name__ for layer in plain.chain][1:3] == ["Relu", "MaxPool2D"]
    for net in (fast, plain):
        net.gradient(x, t)
        net.loss(x, t, train=True)
    assert fast.loss(x, t) == plain.loss(x, t)
    fast.gradient(x, t)
    plain.gradient(x, t)
    for name in fast.grads:
        assert np.array_equal(fast.grads[name], plain.grads[name]), name
    other = Network.from_specs(
        [specs[0], {"type": "relu"}, {"type": "avg_pool2d"}, *specs[3:]], (1, 9, 9)
    )
    assert other.order == [0, 1, 2, 3, 4]  # only ReLU -> max-pool commutes exactly


def test_summary_lists_each_layer_with_its_type_shape_and_parameter_count():
    rows = mlp().summary()
    assert [(r["index"], r["type"], r["output_shape"], r["params"]) for r in rows] == [
        (0, "flatten", [784], 0),
        (1, "affine", [50], 784 * 50 + 50),
        (2, "relu", [50], 0),
        (3, "affine", [10], 50 * 10 + 10),
    ]
    assert all(r["buffers"] == 0 for r in rows)
    assert mlp().num_params == 784 * 50 + 50 + 50 * 10 + 10


def test_describe_is_a_table_with_totals_and_counts_batchnorm_buffers():
    specs = [{"type": "flatten"}, {"type": "affine", "units": 10}, {"type": "batch_norm"}]
    net = Network.from_specs(specs, (1, 28, 28), num_classes=10)
    assert net.summary()[2]["params"] == 20 and net.summary()[2]["buffers"] == 20
    text = net.describe()
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params"]
    assert lines[1].split() == ["input", "(1,", "28,", "28)"]
    assert lines[3].split() == ["1", "affine", "(10,)", "7,850"]
    assert lines[-2].split() == ["loss", "softmax_with_loss"]
    assert lines[-1] == "7,870 parameters (30.7 KiB of float32) + 20 buffer values"
    assert "7,870 parameters" in repr(net) and "affine->(10,)" in repr(net)


def test_layer_names_in_messages_are_the_registry_keys():
    net = mlp()
    assert [net.layer_name(i) for i in range(4)] == ["flatten", "affine", "relu", "affine"]
