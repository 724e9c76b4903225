"""bptrain's layers in PyTorch's names and layouts: an `nn.Sequential` of the matching modules.

Layer i of the stack is module i of the Sequential, so its tensors are named `i.weight`,
`i.bias` and so on. Four things differ from bptrain's own arrays:
- Linear keeps its weight as (out, in), the transpose of Affine's W (in, out);
- BatchNorm's gamma and beta are `weight` and `bias`, and PyTorch also keeps
  `num_batches_tracked` (an int64 count) beside the running statistics;
- PyTorch's BatchNorm momentum is the weight of the new batch, 1 - bptrain's momentum;
- an Affine straight on an image (the book's SimpleConvNet has no flatten) flattens it itself,
  where nn.Linear would act on the last axis: its module is nn.Sequential(nn.Flatten(),
  nn.Linear(...)), so its tensors are `i.1.weight` and `i.1.bias`.
This one table serves both directions: export writes it, `train --init-from` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.network import Network
from ..errors import ConfigError

# bptrain array name -> PyTorch tensor name, per layer type (a transposed one is marked).
TENSORS: dict[str, dict[str, str]] = {
    "affine": {"W": "weight", "b": "bias"},
    "conv2d": {"W": "weight", "b": "bias"},
    "batch_norm": {
        "gamma": "weight",
        "beta": "bias",
        "running_mean": "running_mean",
        "running_var": "running_var",
    },
}
TRANSPOSED = {("affine", "W")}
COUNTER = "num_batches_tracked"  # a PyTorch BatchNorm buffer bptrain has no use for


@dataclass(frozen=True)
class TorchModule:
    """The PyTorch module a layer is: its class in torch.nn and its constructor arguments."""

    cls: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def code(self) -> str:
        """`nn.Linear(784, 100)`: the module as Python source."""
        parts = [a.code() if isinstance(a, TorchModule) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"nn.{self.cls}({', '.join(parts)})"


def _input_shape(network: Network, i: int) -> tuple[int, ...]:
    return tuple(network.shapes[i - 1]) if i else network.input_shape


def _flattens(network: Network, i: int) -> bool:
    """Layer i is an Affine on an image: PyTorch needs an nn.Flatten before its nn.Linear."""
    return network.layers[i].name == "affine" and len(_input_shape(network, i)) > 1


def prefix(network: Network, i: int) -> str:
    """Where layer i's tensors are in the state dict: `i.`, or `i.1.` inside its Sequential."""
    return f"{i}.1." if _flattens(network, i) else f"{i}."


def module_of(network: Network, i: int) -> TorchModule:
    """The PyTorch module equal to layer i; a ConfigError naming the layer when none is."""
    layer, shape = network.layers[i], _input_shape(network, i)
    name = layer.name
    simple = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "flatten": "Flatten"}
    if name in simple:
        return TorchModule(simple[name])
    if name == "leaky_relu":
        return TorchModule("LeakyReLU", (layer.alpha,))
    if name == "dropout":
        return TorchModule("Dropout", (layer.rate,))
    if name == "affine":
        linear = TorchModule("Linear", (int(np.prod(shape)), layer.units))
        return (
            TorchModule("Sequential", (TorchModule("Flatten"), linear))
            if _flattens(network, i)
            else linear
        )
    if name == "conv2d":
        kernel, stride, pad = tuple(layer.kernel), layer.stride, tuple(layer.pad)
        return TorchModule(
            "Conv2d", (shape[0], layer.filters, kernel), {"stride": stride, "padding": pad}
        )
    if name in ("max_pool2d", "avg_pool2d"):
        cls = "MaxPool2d" if name == "max_pool2d" else "AvgPool2d"
        return TorchModule(cls, (layer.size,), {"stride": layer.stride})
    if name == "batch_norm":
        cls = "BatchNorm1d" if len(shape) == 1 else "BatchNorm2d"
        return TorchModule(
            cls, (shape[0],), {"eps": layer.eps, "momentum": round(1 - layer.momentum, 12)}
        )
    raise ConfigError(
        f"layer {i} ({network.layer_name(i)}) has no PyTorch counterpart bptrain knows",
        hint="export and --init-from cover the registered layers: "
        "affine, conv2d, pools, batch_norm, activations, flatten, dropout",
    )


def modules(network: Network) -> list[TorchModule]:
    """The nn.Sequential's modules, one per layer."""
    return [module_of(network, i) for i in range(len(network.layers))]


def to_torch(
    network: Network, arrays: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The state dict of the Sequential, from the network's arrays (or `arrays` in its names)."""
    arrays = network.arrays if arrays is None else arrays
    state: dict[str, np.ndarray] = {}
    for i, layer in enumerate(network.layers):
        module_of(network, i)  # a layer without a counterpart fails here, named
        for ours, theirs in TENSORS.get(layer.name, {}).items():
            value = np.asarray(arrays[f"{i}.{ours}"])
            if (layer.name, ours) in TRANSPOSED:
                value = value.T
            state[f"{prefix(network, i)}{theirs}"] = np.ascontiguousarray(value)
        if layer.name == "batch_norm":
            state[f"{i}.{COUNTER}"] = np.array(0, dtype=np.int64)
    return state


def from_torch(
    network: Network, tensors: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray]:
    """bptrain's arrays ("0.W", ...) from a Sequential's state dict; every tensor is checked.

    Missing, extra and misshaped tensors are one ConfigError (exit 2) naming the layer, the
    shape it needs and the shape found. `num_batches_tracked` may be there or not.
    """
    expected = to_torch(network)
    found = {k: v for k, v in tensors.items() if not k.endswith(f".{COUNTER}")}
    wanted = {k for k in expected if not k.endswith(f".{COUNTER}")}
    missing, extra = sorted(wanted - set(found)), sorted(set(found) - wanted)
    if missing or extra:
        raise ConfigError(
            f"{source}: its tensors do not fit the config's network (missing: "
            f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})",
            hint="the file must hold the same stack, named as nn.Sequential names it "
            "(0.weight, 0.bias, ...)",
        )
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(network.layers):
        for ours, theirs in TENSORS.get(layer.name, {}).items():
            key = f"{prefix(network, i)}{theirs}"
            value = np.asarray(found[key])
            if value.shape != expected[key].shape:
                raise ConfigError(
                    f"{source}: {key} has shape {list(value.shape)} but layer {i} "
                    f"({network.layer_name(i)}) needs {list(expected[key].shape)}",
                    path=f"model.layers[{i}]",
                )
            arrays[f"{i}.{ours}"] = value.T if (layer.name, ours) in TRANSPOSED else value
    return arrays
