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


# The seed's classes with their flaws fixed, as docs/learn.md has a learner write them: the
# book's Affine(W, b) with dW and db attributes, a Relu.backward that leaves dout alone, and a
# Sigmoid with bptrain's stable arithmetic (the seed's 1 / (1 + exp(-x)) rounds otherwise).
BOOK_LAYERS = (
    Path(__file__).resolve().parents[1] / "examples" / "seed_layers_fixed.py"
).read_text()


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
