"""Network: a layer stack built from specs, with shapes inferred at build time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import accel
from ..errors import ConfigError
from ..functional import labels_of
from .layers import LAYERS, Layer, MaxPool2D, Relu, Shape, fused
from .losses import LOSSES, Loss


class Network:
    """Layers applied in order, ending in a loss layer.

    Parameters are exposed flat as ``"<layer index>.<name>"`` (``"1.W"``); the dict values are
    the layers' own arrays, so in-place optimizer updates are seen by the layers.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: Loss,
        input_shape: Shape,
        *,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
        path: str = "layers",
    ) -> None:
        self.layers = list(layers)
        self.layer_path = path  # where the layers sit in the config, for error messages
        self.loss_layer = loss
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        accel.prepare()  # the kernels and thread budget, chosen before any product runs
        # Layers that draw random numbers while training (dropout) keep this generator.
        self.rng = rng if rng is not None else np.random.default_rng()
        self.shapes = self._build(self.rng)
        self.params = self._named("params")
        self.grads = self._named("grads")
        self.buffers = self._named("buffers")
        self.first_trained = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        if self.first_trained is not None:
            self.layers[self.first_trained].skip_input_grad = True
        self.order = self._execution_order()
        self.plan()

    def plan(self, fuse: bool = True) -> None:
        """The chain the forward and backward loops run: the layers in execution order, each
        run that can train as one pass (layers/fused.py) a FusedRun in its members' place;
        without `fuse`, the layers alone."""
        self.steps = fused.plan(self.layers, self.order) if fuse else [(i,) for i in self.order]
        self.chain = fused.chain(self.layers, self.order, self.steps)
        # Backward stops at the first trained layer's step: nothing before it needs a gradient
        # (the swapped ReLU/max-pool pairs have no parameters, so that layer keeps its place).
        first = self.first_trained
        self.backward_from = next(
            (k for k, step in enumerate(self.steps) if first is None or max(step) >= first), 0
        )

    def _execution_order(self) -> list[int]:
        """The configured order, except that a ReLU directly before a max-pool runs after it.

        ReLU and max-pooling commute: relu(max(window)) == max(relu(window)), and so do their
        gradients (a window whose maximum is <= 0 passes no gradient either way; otherwise the
        same first maximum gets it). The swap changes no value, bit for bit, and lets ReLU work
        on a quarter of the numbers. Layer numbers in names and messages stay as configured.
        """
        order = list(range(len(self.layers)))
        i = 0
        while i < len(order) - 1:
            if type(self.layers[i]) is Relu and type(self.layers[i + 1]) is MaxPool2D:
                order[i], order[i + 1] = i + 1, i
                i += 2
            else:
                i += 1
        return order

    @classmethod
    def from_specs(
        cls,
        layer_specs: Sequence[Mapping[str, Any]],
        input_shape: Shape,
        loss: str | Mapping[str, Any] = "softmax_with_loss",
        *,
        rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
        num_classes: int | None = None,
        path: str = "model",
    ) -> Network:
        """Build from registry specs such as ``{type: affine, units: 100, init: he}``.

        With `num_classes`, the stack must end in one score per class.
        """
        layers = [LAYERS.build(spec, f"{path}.layers[{i}]") for i, spec in enumerate(layer_specs)]
        loss_layer = LOSSES.build(loss, f"{path}.loss")
        network = cls(layers, loss_layer, input_shape, rng=rng, dtype=dtype, path=f"{path}.layers")
        if num_classes is not None and network.output_shape != (num_classes,):
            last = len(layers) - 1
            raise ConfigError(
                f"the network ends in shape {network.output_shape} but the data has "
                f"{num_classes} classes",
                path=f"{path}.layers[{last}]" if layers else f"{path}.layers",
                hint=f"end the stack with {{type: affine, units: {num_classes}}}",
            )
        return network

    def _build(self, rng: np.random.Generator) -> list[Shape]:
        """Propagate the input shape through every layer; a mismatch names the layer."""
        shapes, shape = [], self.input_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = tuple(layer.build(shape, rng, self.dtype))
            except ConfigError as error:
                raise ConfigError(
                    f"layer {i} ({self.layer_name(i)}) cannot take input of shape {shape}: "
                    f"{error.message}",
                    path=f"{self.layer_path}[{i}]",
                    hint=error.hint,
                ) from None
            shapes.append(shape)
        return shapes

    def layer_name(self, i: int) -> str:
        """The name of layer `i` as people read it (an unregistered class's own name)."""
        return self.layers[i].label

    def _named(self, attr: str) -> dict[str, np.ndarray]:
        return {
            f"{i}.{key}": value
            for i, layer in enumerate(self.layers)
            for key, value in getattr(layer, attr).items()
        }

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Parameters and buffers together: everything that defines the trained model."""
        return {**self.params, **self.buffers}

    def assign(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy values into the named parameters/buffers in place (the arrays stay the same)."""
        arrays = self.arrays
        for name, value in values.items():
            arrays[name][...] = value

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1] if self.shapes else self.input_shape

    def predict(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        """Scores before softmax (the seed: inference needs no softmax)."""
        x = np.asarray(x, dtype=self.dtype)
        for layer in self.chain:
            x = layer.forward(x, train=train)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray, train: bool = False) -> float:
        """Mean loss of a batch; `train=True` runs training-only behaviour (dropout)."""
        return float(self.loss_layer.forward(self.predict(x, train=train), t))

    def backward(self, dout: float = 1, input_grad: bool = False) -> np.ndarray | None:
        """Backpropagate from the loss; fills every layer's grads, returns dL/dx if asked."""
        if self.first_trained is not None:
            self.layers[self.first_trained].skip_input_grad = not input_grad
        grad: np.ndarray | None = self.loss_layer.backward(dout)
        for layer in reversed(self.chain[0 if input_grad else self.backward_from :]):
            grad = layer.backward(grad)
        return grad

    def gradient(self, x: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        """The seed's step 2: forward in training mode, backward; returns (loss, scores)."""
        scores = self.predict(x, train=True)
        loss = float(self.loss_layer.forward(scores, t))
        self.backward()
        return loss, scores

    def evaluate(
        self, x: np.ndarray, t: np.ndarray, batch_size: int = 1000
    ) -> tuple[float, np.ndarray]:
        """(mean loss, predicted labels) over a whole set, in inference mode."""
        n = x.shape[0]
        total, predictions = 0.0, np.empty(n, dtype=np.int64)
        for start in range(0, n, batch_size):
            xb, tb = x[start : start + batch_size], t[start : start + batch_size]
            scores = self.predict(xb)
            total += float(self.loss_layer.forward(scores, tb)) * xb.shape[0]
            predictions[start : start + xb.shape[0]] = scores.argmax(axis=1)
        return total / max(n, 1), predictions

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch_size: int = 1000) -> float:
        """Fraction of samples whose highest score is the label (t: labels or one-hot)."""
        if x.shape[0] == 0:
            return 0.0
        _, predictions = self.evaluate(x, t, batch_size)
        return float(np.mean(predictions == labels_of(t)))

    def find_nonfinite(self, x: np.ndarray, t: np.ndarray) -> str:
        """Replay a batch and name the first layer whose output or gradient is not finite."""
        out = np.asarray(x, dtype=self.dtype)
        if not np.all(np.isfinite(out)):
            return "the input batch"
        for i in self.order:
            out = self.layers[i].forward(out, train=True)
            if not np.all(np.isfinite(out)):
                return f"the output of layer {i} ({self.layer_name(i)})"
        if not np.isfinite(self.loss_layer.forward(out, t)):
            return "the loss"
        grad: np.ndarray | None = self.loss_layer.backward()
        for i in reversed(self.order):
            grad = self.layers[i].backward(grad)
            for key, g in self.layers[i].grads.items():
                if not np.all(np.isfinite(g)):
                    return f"the gradient {i}.{key} of layer {i} ({self.layer_name(i)})"
            if grad is None:
                break
            if not np.all(np.isfinite(grad)):
                return f"the input gradient of layer {i} ({self.layer_name(i)})"
        return "no layer (the values were finite when replayed)"

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer, in configured order: index, type, output shape, parameter count.

        `params` counts trained numbers, `buffers` the kept non-trained ones (BatchNorm's
        running statistics); both are saved in checkpoints.
        """
        return [
            {
                "index": i,
                "type": layer.name,
                "output_shape": list(shape),
                "params": sum(p.size for p in layer.params.values()),
                "buffers": sum(b.size for b in layer.buffers.values()),
            }
            for i, (layer, shape) in enumerate(zip(self.layers, self.shapes, strict=True))
        ]

    @property
    def num_params(self) -> int:
        """How many numbers training adjusts."""
        return sum(p.size for p in self.params.values())

    def describe(self) -> str:
        """A table of the layers (type, output shape, parameters) with the totals below it."""
        rows = [
            ("layer", "type", "output shape", "params"),
            ("", "input", str(self.input_shape), ""),
        ]
        rows += [
            (
                str(r["index"]),
                self.layer_name(r["index"]),
                str(tuple(r["output_shape"])),
                f"{r['params']:,}",
            )
            for r in self.summary()
        ]
        rows.append(("loss", self.loss_layer.name, "", ""))
        widths = [max(len(row[col]) for row in rows) for col in range(4)]
        lines = [
            f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>{widths[3]}}".rstrip()
            for a, b, c, d in rows
        ]
        return "\n".join([*lines, self._totals()])

    def _totals(self) -> str:
        size = sum(p.nbytes for p in self.params.values())
        text = f"{self.num_params:,} parameters ({size / 1024:,.1f} KiB of {self.dtype})"
        kept = sum(b.size for b in self.buffers.values())
        return text + (f" + {kept:,} buffer values" if kept else "")

    def __repr__(self) -> str:
        rows = ", ".join(f"{self.layer_name(i)}->{s}" for i, s in enumerate(self.shapes))
        return f"Network(input={self.input_shape}, {rows}; {self.num_params:,} parameters)"
