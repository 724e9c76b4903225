"""A network as an ONNX graph: one node per layer, the weights as initializers.

The graph takes `pixels` (N, C, H, W) float32 in [0, 1], exactly what bptrain's loader feeds
the network, and gives `probabilities` (softmax over the classes) and the `logits` before it.
N is dynamic. Inference form throughout: BatchNorm uses its running statistics and Dropout is
the identity, as bptrain's own forward does outside training.

Opset 13 and IR version 7 are pinned (ONNX 1.8's): ONNX Runtime has run them since 1.6
(2020), every ONNX Runtime Web release has (it began at 1.8), and even its WebGL backend, the
one with the shortest operator list, has every operator used here at opset 13. Softmax's
single-axis form came in 13, so the graph needs no older opset's reshaping around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..engine.network import Network
from ..errors import CheckFailed, ConfigError
from ..extras import require

OPSET = 13
IR_VERSION = 7
INPUT, PROBABILITIES, LOGITS = "pixels", "probabilities", "logits"

# Layers that are one ONNX operator without attributes (Dropout: inference is the identity).
SIMPLE = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "dropout": "Identity"}
EXPORTED = (*SIMPLE, "leaky_relu", "flatten", "affine", "conv2d", "max_pool2d", "avg_pool2d",
            "batch_norm")  # fmt: skip


def onnx_module() -> Any:
    """The onnx package, or exit 2 naming the extra that brings it."""
    return require("onnx", "export", "bptrain export --format onnx")


class _Graph:
    """Nodes and initializers as they are added, in order."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def weight(self, name: str, array: np.ndarray) -> str:
        value = np.ascontiguousarray(array, dtype=np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        return name


def build(network: Network, metadata: Mapping[str, str], title: str) -> Any:
    """The ModelProto of `network` (exit 2 naming the first layer with no ONNX form)."""
    onnx = onnx_module()
    graph, current = _Graph(onnx), INPUT
    last = len(network.layers) - 1
    for i in range(len(network.layers)):
        current = _layer(graph, network, i, current, LOGITS if i == last else f"{i}.out")
    graph.node("Softmax", [current], PROBABILITIES, "softmax", axis=1)
    floats, classes = onnx.TensorProto.FLOAT, network.output_shape[0]
    proto = onnx.helper.make_graph(
        graph.nodes,
        title,
        [onnx.helper.make_tensor_value_info(INPUT, floats, ["N", *network.input_shape])],
        [
            onnx.helper.make_tensor_value_info(PROBABILITIES, floats, ["N", classes]),
            onnx.helper.make_tensor_value_info(LOGITS, floats, ["N", classes]),
        ],
        initializer=graph.initializers,
    )
    model = onnx.helper.make_model(
        proto,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        producer_name="bptrain",
        producer_version=__version__,
    )
    model.ir_version = IR_VERSION
    model.doc_string = (
        f"{title}, trained by bptrain. Input `{INPUT}`: {metadata.get('preprocessing', '')} "
        f"Outputs: `{PROBABILITIES}` (softmax over the classes) and `{LOGITS}` (before it)."
    )
    onnx.helper.set_model_props(model, dict(metadata))
    return model


def _layer(graph: _Graph, network: Network, i: int, x: str, out: str) -> str:
    """Add layer i's node(s) reading `x` and writing `out`."""
    layer, name = network.layers[i], network.layers[i].name
    label = f"layer {i} ({name})"
    if name in SIMPLE:
        return graph.node(SIMPLE[name], [x], out, label)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [x], out, label, alpha=layer.alpha)
    if name == "flatten":
        return graph.node("Flatten", [x], out, label, axis=1)
    if name == "affine":
        shape = network.shapes[i - 1] if i else network.input_shape
        if len(shape) > 1:  # Affine flattens an image itself; Gemm wants (N, D)
            x = graph.node("Flatten", [x], f"{i}.flat", f"{label} flatten", axis=1)
        W, b = graph.weight(f"{i}.W", layer.params["W"]), graph.weight(f"{i}.b", layer.params["b"])
        return graph.node("Gemm", [x, W, b], out, label)  # x @ W + b, W as (in, out)
    if name == "conv2d":
        (kh, kw), (ph, pw), s = layer.kernel, layer.pad, layer.stride
        W, b = graph.weight(f"{i}.W", layer.params["W"]), graph.weight(f"{i}.b", layer.params["b"])
        return graph.node(
            "Conv", [x, W, b], out, label,
            kernel_shape=[kh, kw], pads=[ph, pw, ph, pw], strides=[s, s],
        )  # fmt: skip
    if name in ("max_pool2d", "avg_pool2d"):
        op = "MaxPool" if name == "max_pool2d" else "AveragePool"
        window = [layer.size, layer.size]
        return graph.node(op, [x], out, label, kernel_shape=window, strides=[layer.stride] * 2)
    if name == "batch_norm":  # (N, C) and (N, C, H, W) alike: statistics per feature or channel
        arrays = {**layer.params, **layer.buffers}
        keys = ("gamma", "beta", "running_mean", "running_var")
        inputs = [x, *(graph.weight(f"{i}.{key}", arrays[key]) for key in keys)]
        return graph.node("BatchNormalization", inputs, out, label, epsilon=layer.eps)
    raise ConfigError(
        f"layer {i} ({network.layer_name(i)}) has no ONNX form bptrain knows",
        path=f"model.layers[{i}]",
        hint=f"export to ONNX covers {', '.join(EXPORTED)}",
    )


def check_file(path: Path) -> None:
    """onnx.checker in full-check mode (with shape inference) on the written file; exit 1."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        said = " ".join(str(error).split())  # its message spans lines; an Error: line does not
        raise CheckFailed(f"onnx.checker rejects the exported graph: {said}") from None
