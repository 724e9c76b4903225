"""The layer protocol: forward caches what backward needs; backward returns dx, fills grads."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...registry import Named, Registry

LAYERS = Registry("layer")

Shape = tuple[int, ...]


class Layer(Named):
    """One node of the computational graph working on a batch.

    `params` and `grads` share keys and hold arrays that are never rebound after `build`:
    optimizers update them in place and the network hands out views of these very arrays.
    `buffers` hold non-trained state that checkpoints must keep (BatchNorm's running stats).
    `name` is the registry key (``"affine"``), the one name messages and summaries use.
    """

    # A spec and an input shape (without the batch axis) the test suite gradient-checks every
    # registered layer with, so a new layer is covered the day it is registered.
    example: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        # Set by the network on the first layer that has parameters: nothing upstream needs
        # its input gradient, so backward may skip computing it (and return None).
        self.skip_input_grad = False

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        """Create parameters for `input_shape` (no batch axis); return the output shape."""
        return input_shape

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The name people read: the registry key. A class from your own file is registered
        under the file's whole path and shows as `my_layers.py:Relu` (custom/adapter.py)."""
        return self.name

    def kink_state(self) -> tuple[np.ndarray, ...]:
        """Arrays that change when an input crosses a kink (ReLU's mask, max-pool's choice).

        Gradient checks compare them before and after nudging a value, to know whether the
        nudge stepped over a point where the derivative jumps.
        """
        return ()

    def _set_params(self, **arrays: np.ndarray) -> None:
        """Install parameters and zeroed gradient arrays of the same shape and dtype."""
        for name, value in arrays.items():
            self.params[name] = value
            self.grads[name] = np.zeros_like(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
