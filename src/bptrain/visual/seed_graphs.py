"""The seed's computational graphs, computed by the real nodes with a forward and backward pass.

`shop` and `shop-oranges` are the seed's problems 1 and 2 (apples, oranges, tax) on MulLayer
and AddLayer; `sigmoid` is its graph of y = 1 / (1 + exp(-x)) on nodes for x(-1), exp, +1
and 1/x, whose backward value the seed shows to equal dout * y * (1 - y). Every number on
the pictures comes out of those nodes; change an input with --set and the numbers change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.layers import AddLayer, ExpLayer, MulLayer, ReciprocalLayer, Sigmoid
from ..errors import ConfigError
from ..registry import did_you_mean
from .graph import Edge, Graph, Node, number

# exp(-x) of the composed graph overflows float64 past this (the Sigmoid layer never does).
EXP_LIMIT = 709.0


@dataclass
class Op:
    """One node's work as the real node did it, for the step-through page (steps.py)."""

    node: str  # the graph node's id
    layer: Any  # the MulLayer, AddLayer, ExpLayer or ReciprocalLayer that computed it
    result: str  # what its output is called in words ("apple price")
    inputs: tuple[float, ...]  # in the order of the node's incoming edges
    output: float
    upstream: float | None = None  # the gradient backward received
    local: tuple[float, ...] = ()  # the local derivative per input: backward of a gradient of 1
    grads: tuple[float, ...] = ()  # what backward passed back: local × upstream


@dataclass
class Tape:
    """Runs the nodes' forward and backward and keeps what they computed, in order."""

    forward_order: list[Op] = field(default_factory=list)
    backward_order: list[Op] = field(default_factory=list)

    def forward(self, node: str, layer: Any, *inputs: float, result: str) -> float:
        output = layer.forward(*inputs)
        self.forward_order.append(Op(node, layer, result, tuple(inputs), float(output)))
        return output

    def backward(self, node: str, layer: Any, dout: float) -> Any:
        grads = layer.backward(dout)
        # The node's own backward with an upstream gradient of 1 is its local derivative:
        # the page shows the node's numbers, never a formula recomputed beside it.
        local = layer.backward(1.0)
        op = next(op for op in self.forward_order if op.node == node)
        op.upstream, op.local, op.grads = float(dout), _floats(local), _floats(grads)
        self.backward_order.append(op)
        return grads


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, tuple) else (float(value),)


@dataclass(frozen=True)
class Example:
    description: str
    defaults: dict[str, float]
    build: Callable[[dict[str, float], Tape], Graph]


def _value(node_id: str, label: str) -> Node:
    return Node(node_id, label, kind="value")


def _op(node_id: str, label: str) -> Node:
    return Node(node_id, label, kind="op")


def _edge(source: str, target: str, forward: float, backward: float | None) -> Edge:
    return Edge(source, target, number(forward), None if backward is None else number(backward))


def _shop(v: dict[str, float], tape: Tape) -> Graph:
    """Problem 1: 2 apples at 100 with 10% tax (apple_layer, tax_layer as in the seed)."""
    apple_layer, tax_layer = MulLayer(), MulLayer()
    apple_price = tape.forward(
        "mul_apple", apple_layer, v["apple.price"], v["apple.count"], result="apple price"
    )
    price = tape.forward("mul_tax", tax_layer, apple_price, v["tax"], result="price")
    dapple_price, dtax = tape.backward("mul_tax", tax_layer, v["dout"])
    dapple, dcount = tape.backward("mul_apple", apple_layer, dapple_price)
    nodes = [
        _value("apple.price", "apple"),
        _value("apple.count", "apple count"),
        _op("mul_apple", "×"),
        _value("tax", "tax"),
        _op("mul_tax", "×"),
        _value("price", "price"),
    ]
    edges = [
        _edge("apple.price", "mul_apple", v["apple.price"], dapple),
        _edge("apple.count", "mul_apple", v["apple.count"], dcount),
        _edge("mul_apple", "mul_tax", apple_price, dapple_price),
        _edge("tax", "mul_tax", v["tax"], dtax),
        _edge("mul_tax", "price", price, v["dout"]),
    ]
    title = (
        f"shop: {number(v['apple.count'])} apples at {number(v['apple.price'])}, "
        f"tax ×{number(v['tax'])}"
    )
    values = {
        "inputs": v,
        "forward": {"apple_price": apple_price, "price": price},
        "backward": {"apple.price": dapple, "apple.count": dcount, "apple_price": dapple_price,
                     "tax": dtax},
    }  # fmt: skip
    return Graph(title, nodes, edges, values=values)


# Long: the seed's shopping graph with apples and oranges, each line one node or edge.
# Long: the seed's problem 2 node by node (its figure 5-17), each line one node or edge.
def _shop_oranges(v: dict[str, float], tape: Tape) -> Graph:
    """Problem 2: plus 3 oranges at 150; an AddLayer sums the two fruits before the tax."""
    mul_apple, mul_orange, add_fruit, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()
    apple_price = tape.forward("mul_apple", mul_apple, v["apple.price"], v["apple.count"],
                               result="apple price")  # fmt: skip
    orange_price = tape.forward("mul_orange", mul_orange, v["orange.price"], v["orange.count"],
                                result="orange price")  # fmt: skip
    fruit_price = tape.forward("add_fruit", add_fruit, apple_price, orange_price,
                               result="fruit price")  # fmt: skip
    price = tape.forward("mul_tax", mul_tax, fruit_price, v["tax"], result="price")
    dfruit_price, dtax = tape.backward("mul_tax", mul_tax, v["dout"])
    dapple_price, dorange_price = tape.backward("add_fruit", add_fruit, dfruit_price)
    dorange, dorange_count = tape.backward("mul_orange", mul_orange, dorange_price)
    dapple, dapple_count = tape.backward("mul_apple", mul_apple, dapple_price)
    nodes = [
        _value("apple.price", "apple"),
        _value("apple.count", "apple count"),
        _value("orange.price", "orange"),
        _value("orange.count", "orange count"),
        _op("mul_apple", "×"),
        _op("mul_orange", "×"),
        _op("add_fruit", "+"),
        _value("tax", "tax"),
        _op("mul_tax", "×"),
        _value("price", "price"),
    ]
    edges = [
        _edge("apple.price", "mul_apple", v["apple.price"], dapple),
        _edge("apple.count", "mul_apple", v["apple.count"], dapple_count),
        _edge("orange.price", "mul_orange", v["orange.price"], dorange),
        _edge("orange.count", "mul_orange", v["orange.count"], dorange_count),
        _edge("mul_apple", "add_fruit", apple_price, dapple_price),
        _edge("mul_orange", "add_fruit", orange_price, dorange_price),
        _edge("add_fruit", "mul_tax", fruit_price, dfruit_price),
        _edge("tax", "mul_tax", v["tax"], dtax),
        _edge("mul_tax", "price", price, v["dout"]),
    ]
    title = (
        f"shop: {number(v['apple.count'])} apples at {number(v['apple.price'])}, "
        f"{number(v['orange.count'])} oranges at {number(v['orange.price'])}, "
        f"tax ×{number(v['tax'])}"
    )
    values = {
        "inputs": v,
        "forward": {"apple_price": apple_price, "orange_price": orange_price,
                    "fruit_price": fruit_price, "price": price},
        "backward": {"apple.price": dapple, "apple.count": dapple_count, "orange.price": dorange,
                     "orange.count": dorange_count, "apple_price": dapple_price,
                     "orange_price": dorange_price, "fruit_price": dfruit_price, "tax": dtax},
    }  # fmt: skip
    return Graph(title, nodes, edges, values=values)


# Long: the seed's sigmoid graph node by node (its figure 5-19), each line one node or edge.
def _sigmoid(v: dict[str, float], tape: Tape) -> Graph:
    """y = 1 / (1 + exp(-x)) as the seed composes it: x(-1), exp, +1, 1/x."""
    x, dout = v["x"], v["dout"]
    if abs(x) > EXP_LIMIT:
        raise ConfigError(
            f"x = {number(x)}: the composed graph computes exp(-x) as drawn, which overflows "
            f"past |x| = {EXP_LIMIT:g} (bptrain's Sigmoid layer is stable for any x)",
            path="--x", hint=f"use an x between -{EXP_LIMIT:g} and {EXP_LIMIT:g}",
        )  # fmt: skip
    negate, exp, add_one, reciprocal = MulLayer(), ExpLayer(), AddLayer(), ReciprocalLayer()
    minus_x = tape.forward("negate", negate, x, -1.0, result="-x")
    e = tape.forward("exp", exp, minus_x, result="exp(-x)")
    denominator = tape.forward("add_one", add_one, e, 1.0, result="1 + exp(-x)")
    y = tape.forward("reciprocal", reciprocal, denominator, result="y")
    ddenominator = tape.backward("reciprocal", reciprocal, dout)
    de, _ = tape.backward("add_one", add_one, ddenominator)
    dminus_x = tape.backward("exp", exp, de)
    dx, _ = tape.backward("negate", negate, dminus_x)
    layer = Sigmoid()
    layer.forward(np.array([x]))
    fused = float(layer.backward(np.array([dout]))[0])
    nodes = [
        _value("x", "x"),
        _value("minus_one", "-1"),
        _op("negate", "×"),
        _op("exp", "exp"),
        _value("one", "1"),
        _op("add_one", "+"),
        _op("reciprocal", "/"),
        _value("y", "y"),
    ]
    edges = [
        _edge("x", "negate", x, dx),
        _edge("minus_one", "negate", -1.0, None),  # a constant: no derivative is wanted
        _edge("negate", "exp", minus_x, dminus_x),
        _edge("exp", "add_one", e, de),
        _edge("one", "add_one", 1.0, None),
        _edge("add_one", "reciprocal", denominator, ddenominator),
        _edge("reciprocal", "y", y, dout),
    ]
    caption = (
        f"∂L/∂x = {number(dx)} = dout · y · (1 − y) = {number(dout)} · {number(y)} · "
        f"{number(1 - y)} = {number(dout * y * (1 - y))}; the Sigmoid layer's backward: "
        f"{number(fused)}"
    )
    values = {
        "inputs": v,
        "forward": {"minus_x": minus_x, "exp": e, "denominator": denominator, "y": y},
        "backward": {"denominator": ddenominator, "exp": de, "minus_x": dminus_x, "x": dx},
        "dout_y_one_minus_y": dout * y * (1 - y),
        "sigmoid_layer_backward": fused,
    }
    return Graph(f"sigmoid at x = {number(x)}", nodes, edges, caption, values=values)


EXAMPLES = {
    "shop": Example(
        "the seed's problem 1: 2 apples at 100, tax 1.1 (MulLayer)",
        {"apple.price": 100.0, "apple.count": 2.0, "tax": 1.1, "dout": 1.0},
        _shop,
    ),
    "shop-oranges": Example(
        "problem 2: plus 3 oranges at 150 (MulLayer, AddLayer)",
        {
            "apple.price": 100.0,
            "apple.count": 2.0,
            "orange.price": 150.0,
            "orange.count": 3.0,
            "tax": 1.1,
            "dout": 1.0,
        },
        _shop_oranges,
    ),
    "sigmoid": Example(
        "the sigmoid's graph: x(-1), exp, +1, 1/x; backward = dout * y * (1 - y)",
        {"x": 1.0, "dout": 1.0},
        _sigmoid,
    ),
}


def seed_graph(name: str, settings: Sequence[str] = (), tape: Tape | None = None) -> Graph:
    """The example's graph with its inputs changed by `name=value` settings; `tape` keeps what
    each node computed, in order."""
    example = EXAMPLES[name]
    values = dict(example.defaults)
    for text in settings:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or key not in values:
            raise ConfigError(_unknown_input(name, key if sep else text, values))
        values[key] = _parse_number(key, raw)
    graph = example.build(values, tape if tape is not None else Tape())
    _check_finite(name, settings, graph.values)
    return graph


def _check_finite(name: str, settings: Sequence[str], values: dict, where: str = "") -> None:
    """Every number the example computed is finite: float64 ends at 1.8e308, and --set can
    ask for more (apple.price=1e308 × 10 apples)."""
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if isinstance(value, dict):
            _check_finite(name, settings, value, path)
        elif not math.isfinite(value):
            raise ConfigError(
                f"{name} with {' '.join(settings)}: {path} is {value} (float64 holds numbers up "
                f"to 1.8e308)",
                path="--set", hint="use smaller inputs",
            )  # fmt: skip


def _unknown_input(example: str, key: str, values: dict[str, float]) -> str:
    close = did_you_mean(key, values)
    guess = f" (did you mean {close!r}?)" if close else ""
    names = ", ".join(f"{k}={number(v)}" for k, v in values.items())
    return f"--set {key!r}: {example} has no such input{guess}; its inputs: {names}"


def _parse_number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"--set {key}={raw}: expected a finite number")
    return value
