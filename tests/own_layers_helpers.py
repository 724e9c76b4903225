"""Users' own layers for tests: Python files of layer classes, and configs that name them."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import small_config

# A ReLU written as a bptrain Layer, as a practitioner would: the built-in one's arithmetic.
LAYER_RELU = '''\
import numpy as np
from bptrain.engine.layers import Layer


class Relu(Layer):
    """max(0, x), from the user's own file."""

    def forward(self, x, train=False):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout):
        return dout * self.mask

    def kink_state(self):
        return (self.mask,)
'''

# Put at the top of a file: importing it leaves a file beside it (a checkpoint must not).
MARKER = "imported.marker"
MARKER_LINE = f'from pathlib import Path\nPath(__file__).with_name("{MARKER}").touch()\n'


def write_layers(folder: Path, name: str = "my_layers.py", *, marker: bool = False) -> Path:
    """A file of own layers (class Relu) in `folder`; with `marker`, importing it leaves a mark."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text((MARKER_LINE if marker else "") + LAYER_RELU)
    return path


def own_config(data: Path, layer_type: str = "my_layers.py:Relu", **train) -> dict:
    """cli_helpers.small_config with its ReLU (layer 2) taken from the user's file."""
    config = small_config(data, **train)
    config["model"]["layers"][2] = {"type": layer_type}
    return config


# The seed's classes as a learner writes them (forward(x), backward(dout), Affine(W, b), dW and
# db attributes), with a Relu.backward that leaves dout alone, and a Sigmoid with the arithmetic
# of bptrain's (the seed's 1 / (1 + exp(-x)) rounds otherwise for x < 0, and overflows).
BOOK_LAYERS = """\
import numpy as np


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        out = np.dot(self.x, self.W) + self.b
        return out

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        dx = dx.reshape(*self.original_x_shape)
        return dx


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1, e) / (1 + e)
        return self.out

    def backward(self, dout):
        dx = dout * (1.0 - self.out) * self.out
        return dx
"""


def book_stack(prefix: str = "") -> list[dict]:
    """affine, sigmoid, affine, relu, affine: built in (no prefix) or from the book's file."""
    names = {"affine": "Affine", "sigmoid": "Sigmoid", "relu": "Relu"}

    def layer(kind: str, **keys) -> dict:
        return {"type": f"{prefix}{names[kind]}" if prefix else kind, **keys}

    return [
        {"type": "flatten"},
        layer("affine", units=32, init="he"),
        layer("sigmoid"),
        layer("affine", units=16, init="xavier"),
        layer("relu"),
        layer("affine", units=10, init="he"),
    ]
