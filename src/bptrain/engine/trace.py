"""One forward and one backward pass through a network, keeping what every layer made.

`bptrain graph` annotates a network's nodes with these statistics and the draw-a-digit page
shows the same arrays: each layer's output, the gradient flowing back into it, every
parameter's gradient, and the gradient of the loss with respect to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..functional import finite_or_null, softmax
from .network import Network

# Layers whose zeros mean "this unit is off" (a dead ReLU is zero for every sample).
RECTIFIERS = ("relu",)


@dataclass
class LayerTrace:
    """Layer `index` of a traced pass: its output, dL/d(output), its parameters' gradients."""

    index: int
    name: str  # the registry name ("affine")
    output: np.ndarray  # (N, *output shape)
    grad: np.ndarray  # dL/d(output), the same shape
    param_grads: dict[str, np.ndarray]  # copies: later passes overwrite the layer's own arrays
    params: dict[str, np.ndarray]  # the layer's own arrays (not copies)

    def stats(self) -> dict[str, Any]:
        """Activation and gradient statistics, as plain numbers (non-finite ones as None)."""
        out: dict[str, Any] = {
            "index": self.index,
            "type": self.name,
            "output_shape": list(self.output.shape[1:]),
            "activation": _moments(self.output),
            "gradient": _moments(self.grad) | {"norm": _norm(self.grad)},
        }
        if self.name in RECTIFIERS:
            out["activation"] |= {
                "zeros": float(np.mean(self.output == 0)),
                "dead_units": _dead_share(self.output),
            }
        out["params"] = {key: self._param(key) for key in self.params}
        return finite_or_null(out)

    def _param(self, key: str) -> dict[str, Any]:
        norm, grad_norm = _norm(self.params[key]), _norm(self.param_grads[key])
        return {
            "shape": list(self.params[key].shape),
            "norm": norm,
            "grad_norm": grad_norm,
            # How far one plain SGD step (lr 1) moves the weights, relative to their size.
            "grad_to_weight": grad_norm / norm if norm else None,
        }


@dataclass
class Trace:
    """A traced pass: the loss, the probabilities, every layer, and dL/d(input)."""

    x: np.ndarray
    t: np.ndarray
    loss: float
    probabilities: np.ndarray  # (N, classes) softmax of the scores
    layers: list[LayerTrace]
    input_grad: np.ndarray  # (N, *input shape)

    def stats(self) -> dict[str, Any]:
        return finite_or_null(
            {
                "samples": int(self.x.shape[0]),
                "loss": self.loss,
                "input": _moments(self.x),
                "input_gradient": _moments(self.input_grad) | {"norm": _norm(self.input_grad)},
                "layers": [layer.stats() for layer in self.layers],
            }
        )


def trace(network: Network, x: np.ndarray, t: np.ndarray, *, train: bool = False) -> Trace:
    """Forward and backward through every layer in configured order, keeping their arrays.

    Inference mode by default (running BatchNorm statistics, no dropout): the function the
    model computes when it predicts. The network's ReLU/max-pool swap is not used here, so
    each output is the one the config describes (the values are the same either way).
    """
    x = np.asarray(x, dtype=network.dtype)
    outputs, out = [], x
    for layer in network.layers:
        out = layer.forward(out, train=train)
        outputs.append(out)
    loss = float(network.loss_layer.forward(out, t))
    probabilities = softmax(out.astype(np.float64))
    grads: list[np.ndarray] = [np.empty(0)] * len(network.layers)
    grad = network.loss_layer.backward()
    param_grads: list[dict[str, np.ndarray]] = [{}] * len(network.layers)
    for i in reversed(range(len(network.layers))):
        layer = network.layers[i]
        grads[i] = grad
        layer.skip_input_grad = False  # the input gradient is wanted here (Network resets it)
        grad = layer.backward(grad)
        param_grads[i] = {key: g.copy() for key, g in layer.grads.items()}
    layers = [
        LayerTrace(i, layer.name, outputs[i], grads[i], param_grads[i], layer.params)
        for i, layer in enumerate(network.layers)
    ]
    return Trace(x, np.asarray(t), loss, probabilities, layers, grad)


def _moments(a: np.ndarray) -> dict[str, float | None]:
    a64 = a.astype(np.float64, copy=False)
    return {"mean": float(a64.mean()), "std": float(a64.std())}


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64, copy=False).ravel()))


def _dead_share(output: np.ndarray) -> float:
    """Share of units (features, or channels of an image) that are zero for every sample."""
    # (N, D) -> per feature; (N, C, H, W) -> per channel, over samples and positions
    axes = (0,) if output.ndim == 2 else (0, *range(2, output.ndim))
    return float(np.mean(np.all(output == 0, axis=axes)))
