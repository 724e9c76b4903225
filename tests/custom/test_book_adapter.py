"""custom/book.py, names.py and adapter.py: a book-style class called and trained its way."""

from pathlib import Path

import numpy as np
import pytest

from bptrain.custom.adapter import as_layer
from bptrain.custom.book import BookClass
from bptrain.custom.names import reference_for, reference_named
from bptrain.custom.source import import_file
from bptrain.engine.layers import LAYERS, Layer
from bptrain.engine.losses import SoftmaxWithLoss
from bptrain.engine.network import Network
from bptrain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FIXED = import_file(ROOT / "examples" / "seed_layers_fixed.py")
BOOK = import_file(ROOT / "tests" / "check" / "book_layers.py")


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("MulLayer", "MulLayer"),
        ("AddLayer", "AddLayer"),
        ("Relu", "relu"),
        ("ReLU", "relu"),
        ("Sigmoid", "sigmoid"),
        ("Tanh", "tanh"),
        ("Affine", "affine"),
        ("Linear", "affine"),
        ("Dense", "affine"),
        ("SoftmaxWithLoss", "softmax_with_loss"),
        ("Convolution", "conv2d"),
        ("Conv2D", "conv2d"),
        ("Pooling", "max_pool2d"),
        ("MaxPool", "max_pool2d"),
        ("BatchNormalization", "batch_norm"),
        ("Dropout", "dropout"),
        ("LeakyRelu", "leaky_relu"),
        ("AvgPool2D", "avg_pool2d"),
        ("Flatten_Layer", "flatten"),
    ],
)
def test_a_class_name_finds_its_reference(name, reference):
    assert reference_for(name).name == reference


def test_a_name_without_reference_and_a_bad_as():
    assert reference_for("Swish") is None
    with pytest.raises(ConfigError, match="did you mean 'affine'"):
        reference_named("afine")


def test_the_book_signatures_are_read():
    assert BookClass.of(FIXED.MulLayer).kind == "binary"
    assert BookClass.of(FIXED.SoftmaxWithLoss).kind == "loss"
    affine = BookClass.of(FIXED.Affine)
    assert affine.kind == "unary" and affine.array_args == ("W", "b")
    dropout = BookClass.of(BOOK.Dropout)
    assert dropout.train_flag == "train_flg" and dict(dropout.options) == {"dropout_ratio": 0.5}
    pooling = BookClass.of(BOOK.Pooling)
    assert set(pooling.options) == {"pool_h", "pool_w", "stride", "pad"}
    bn = BookClass.of(BOOK.BatchNormalization)
    assert bn.array_args == ("gamma", "beta", "running_mean", "running_var")


def test_gradients_in_dicts_are_read_like_attributes():
    class DictAffine:
        def __init__(self, W, b):
            self.params = {"W": W, "b": b}
            self.grads = {}

        def forward(self, x):
            self.x = x
            return x @ self.params["W"] + self.params["b"]

        def backward(self, dout):
            self.grads["W"], self.grads["b"] = self.x.T @ dout, dout.sum(axis=0)
            return dout @ self.params["W"].T

    book = BookClass.of(DictAffine)
    obj = book.construct({"W": np.ones((3, 2)), "b": np.zeros(2)}, {})
    book.forward(obj, np.ones((4, 3)))
    book.backward(obj, np.ones((4, 2)))
    assert book.parameter(obj, "W").shape == (3, 2)
    assert np.array_equal(book.gradient(obj, "b"), [4.0, 4.0])


def _networks(dtype=np.float64):
    """The same stack twice: built-in layers, and the fixed seed's classes through as_layer."""
    own = {
        n: as_layer(getattr(FIXED, n), f"seed_layers_fixed.py:{n}", {})
        for n in ("Affine", "Sigmoid")
    }
    built = [
        LAYERS.build({"type": "affine", "units": 6}),
        LAYERS.build("sigmoid"),
        LAYERS.build({"type": "affine", "units": 3}),
    ]
    mine = [own["Affine"](units=6), own["Sigmoid"](), own["Affine"](units=3)]
    nets = [
        Network(layers, SoftmaxWithLoss(), (2, 2), rng=np.random.default_rng(5), dtype=dtype)
        for layers in (built, mine)
    ]
    return nets


def test_own_layers_give_the_built_in_loss_and_gradients():
    built, mine = _networks()
    for a, b in zip(built.arrays.values(), mine.arrays.values(), strict=True):
        assert np.array_equal(a, b)  # the reference drew the weights from the same generator
    x = np.random.default_rng(1).standard_normal((5, 2, 2))
    t = np.array([0, 1, 2, 1, 0])
    assert built.loss(x, t) == pytest.approx(mine.loss(x, t), rel=1e-12)
    built.backward(), mine.backward()
    for key in built.grads:
        np.testing.assert_allclose(mine.grads[key], built.grads[key], rtol=1e-10, atol=1e-12)


def test_the_optimizer_updates_reach_the_users_object():
    _, mine = _networks()
    layer = mine.layers[0]
    mine.params["0.W"][...] += 1.0  # what an optimizer does: in place
    x = np.ones((1, 2, 2))
    mine.predict(x)
    assert layer.obj.W is mine.params["0.W"]


def test_bad_classes_are_config_errors():
    with pytest.raises(ConfigError, match="takes two inputs"):
        as_layer(FIXED.MulLayer, "f.py:MulLayer", {"file": "f.py"})

    class Weighted:
        def __init__(self, W):
            self.W = W

        def forward(self, x):
            return x @ self.W

        def backward(self, dout):
            return dout @ self.W.T

    with pytest.raises(ConfigError, match="no layer of that name to make them"):
        as_layer(Weighted, "f.py:Weighted", {})


def test_a_bptrain_layer_subclass_is_used_as_it_is():
    class Double(Layer):
        def forward(self, x, train=False):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    made = as_layer(Double, "mine.py:Double", {"file": "mine.py", "sha256": "ab"})
    assert issubclass(made, Double) and made.name == "mine.py:Double"
    assert made.source == {"file": "mine.py", "sha256": "ab"}


def test_book_dropout_draws_its_masks_from_the_run_generator():
    made = as_layer(BOOK.Dropout, "book_layers.py:Dropout", {})
    outs = []
    for _ in range(2):
        layer = made(rate=0.5)
        layer.build((6,), np.random.default_rng(3), np.dtype(np.float32))
        outs.append(layer.forward(np.ones((2, 6), np.float32), train=True))
    assert np.array_equal(outs[0], outs[1])  # same generator, same masks
    assert layer.obj.dropout_ratio == 0.5
