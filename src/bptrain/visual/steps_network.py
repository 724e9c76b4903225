"""A network's forward and backward pass as steps, one layer at a time, for the page.

The numbers are a real pass (engine/trace.py) on a small batch: forward, each layer's output
shape and a summary of its activation; backward, the gradient each layer receives, the rule it
applies (Affine: dx = dout · Wᵀ, dW = xᵀ · dout; ReLU: dx = dout ⊙ [x > 0]) as shapes and norms,
and what it passes back. A network's arrays are too big to show; these are readable summaries.
"""

from __future__ import annotations

import numpy as np

from ..engine.layers import Layer
from ..engine.network import Network
from ..engine.trace import Trace
from .graph import Graph
from .network_graph import display_name, network_graph
from .steps import BACKWARD, FORWARD, Step, Term

# What each layer computes forward, by registry name; a user's own layer gets GENERIC_FORWARD.
FORWARD_RULES = {
    "affine": "out = x · W + b",
    "relu": "out = max(0, x)",
    "leaky_relu": "out = x where x > 0, α · x elsewhere",
    "sigmoid": "out = 1 / (1 + exp(−x))",
    "tanh": "out = tanh(x)",
    "flatten": "out = x reshaped to one row per sample",
    "conv2d": "out = W ∗ x + b (im2col: each window a row, times W)",
    "max_pool2d": "out = the largest value of each window",
    "avg_pool2d": "out = the mean of each window",
    "batch_norm": "out = γ · (x − mean) / √(var + ε) + β, with the running mean and var",
    "dropout": "out = x (dropout is off outside training)",
}
GENERIC_FORWARD = "out = forward(x)"

# Backward: for dx and each parameter, (the rule, the local derivative it multiplies by).
BACKWARD_RULES: dict[str, dict[str, tuple[str, str]]] = {
    "affine": {"x": ("dx = dout · Wᵀ", "Wᵀ {W.T}"), "W": ("dW = xᵀ · dout", "xᵀ {x.T}"),
               "b": ("db = Σ dout over the batch", "1 for every sample")},
    "relu": {"x": ("dx = dout ⊙ [x > 0]", "[x > 0]: 1 for {ones} of the entries, else 0")},
    "leaky_relu": {"x": ("dx = dout ⊙ (1 where x > 0, α elsewhere)", "1 or α")},
    "sigmoid": {"x": ("dx = dout ⊙ y(1 − y)", "y(1 − y), mean {sigmoid}")},
    "tanh": {"x": ("dx = dout ⊙ (1 − y²)", "1 − y², mean {tanh}")},
    "flatten": {"x": ("dx = dout reshaped back to x's shape", "a reshape: every entry × 1")},
    "conv2d": {"x": ("dx = col2im(dout · Wᵀ)", "Wᵀ"), "W": ("dW = col(x)ᵀ · dout", "col(x)ᵀ"),
               "b": ("db = Σ dout over samples and positions", "1 for every position")},
    "max_pool2d": {"x": ("dx = dout sent to each window's maximum", "1 at the maximum, else 0")},
    "avg_pool2d": {"x": ("dx = dout spread evenly over each window", "1 / window size")},
    "batch_norm": {"x": ("dx = dout · γ / √(running var + ε)", "γ / √(var + ε)"),
                   "gamma": ("dγ = Σ dout ⊙ x̂", "x̂, the normalized x"),
                   "beta": ("dβ = Σ dout", "1 for every entry")},
    "dropout": {"x": ("dx = dout (dropout is off outside training)", "1")},
}  # fmt: skip


def steps_graph(network: Network, title: str, traced: Trace, caption: str) -> Graph:
    """The network's graph for the page: the traced gradients' norms on the edges (shown as
    the backward pass reaches them), the nodes' text without the pass's numbers (the steps
    tell those in order)."""
    graph = network_graph(network, title, traced.stats(), caption)
    plain = network_graph(network, title)
    for node, untraced in zip(graph.nodes, plain.nodes, strict=True):
        node.lines = untraced.lines
    return graph


def network_steps(network: Network, traced: Trace, batch_words: str) -> list[Step]:
    """The steps of the traced pass over the graph network_graph() draws of `network`:
    nodes "input", "layer0".."layer{n-1}", "loss", "L"; edge i enters layer i."""
    n = len(network.layers)
    steps = [_input_step(traced, batch_words)]
    steps += [_forward_step(network, traced, i) for i in range(n)]
    steps.append(_loss_forward(network, traced))
    steps.append(_loss_backward(network, traced))
    steps += [_backward_step(network, traced, i) for i in reversed(range(n))]
    steps.append(_done_step(network, traced))
    return steps


def _input_step(traced: Trace, batch_words: str) -> Step:
    caption = (
        f"The forward pass starts from a batch: {batch_words}, shape {_shape(traced.x.shape)}. "
        f"{_summary(traced.x)}. Each layer turns the batch it receives into its output and "
        "keeps what its backward will need."
    )
    return Step(FORWARD, "The input batch", caption, ["input"], [0])


def _layer_input(traced: Trace, i: int) -> np.ndarray:
    return traced.x if i == 0 else traced.layers[i - 1].output


def _forward_step(network: Network, traced: Trace, i: int) -> Step:
    layer, out = network.layers[i], traced.layers[i].output
    rule = FORWARD_RULES.get(layer.name, GENERIC_FORWARD)
    name = f"{display_name(layer)} #{i}"
    caption = (
        f"{name} takes x {_shape(_layer_input(traced, i).shape)} and computes {rule}: an output "
        f"of shape {_shape(out.shape)}. {_summary(out)}."
    )
    if layer.name == "relu":
        caption += f" {_share(out == 0)} of the entries are 0 (their input was ≤ 0)."
    return Step(FORWARD, f"Forward: {name}", caption, [f"layer{i}"], [i, i + 1],
                equation=f"{rule}  →  {_shape(out.shape)}")  # fmt: skip


def _loss_forward(network: Network, traced: Trace) -> Step:
    n, loss = len(network.layers), network.loss_layer
    scores = traced.layers[-1].output if traced.layers else traced.x
    if loss.name == "softmax_with_loss":
        rule = "L = mean of −log softmax(scores)[label]"
        words = "softmax turns the scores into probabilities; cross-entropy compares them"
    else:
        rule = "L = Σ (scores − t)² / 2N"
        words = "the squared error compares the scores"
    caption = (
        f"{display_name(loss)} ends the graph: {words} with the labels, one number for the "
        f"whole batch of {scores.shape[0]}: L = {traced.loss:.4g}."
    )
    return Step(FORWARD, f"Forward: {display_name(loss)}", caption, ["loss"], [n, n + 1],
                reveal=[n + 1], equation=f"{rule} = {traced.loss:.4g}")  # fmt: skip


def _loss_backward(network: Network, traced: Trace) -> Step:
    n, loss = len(network.layers), network.loss_layer
    dscores = traced.layers[-1].grad if traced.layers else traced.input_grad
    local = "(softmax(scores) − t) / N" if loss.name == "softmax_with_loss" else "(y − t) / N"
    term = Term("∂L/∂scores", f"∂L/∂scores = {local}", local, "∂L/∂L = 1", _array("dscores",
                dscores))  # fmt: skip
    caption = (
        f"The backward pass starts at the loss with ∂L/∂L = 1. {display_name(loss)}'s local "
        f"derivative is {local}: the gradient of the scores, {_norm_words(dscores)}, flows "
        "back into the last layer."
    )
    return Step(BACKWARD, f"Backward starts: {display_name(loss)}", caption, ["loss"],
                [n + 1, n], reveal=[n + 1, n], terms=[term])  # fmt: skip


def _backward_step(network: Network, traced: Trace, i: int) -> Step:
    layer, here = network.layers[i], traced.layers[i]
    dx = traced.layers[i - 1].grad if i else traced.input_grad
    rules = BACKWARD_RULES.get(layer.name, {})
    fields = _fields(layer, _layer_input(traced, i), here.output)
    upstream = _array("dout", here.grad)
    grads = {"x": dx, **here.param_grads}
    terms = [
        _term(key, rules.get(key), upstream, _array(f"d{key}", grad), fields)
        for key, grad in grads.items()
    ]
    name = f"{display_name(layer)} #{i}"
    previous = "the input" if i == 0 else f"{display_name(network.layers[i - 1])} #{i - 1}"
    kept = [t.product for t in terms[1:]]
    keeps = f" It keeps {' and '.join(kept)} for the optimizer." if kept else ""
    caption = (
        f"{name} receives the upstream gradient dout = ∂L/∂out, {_norm_words(here.grad)}. Its "
        f"local step: {'; '.join(t.rule for t in terms)}. It passes dx, {_norm_words(dx)}, back "
        f"to {previous}.{keeps}"
    )
    return Step(BACKWARD, f"Backward: {name}", caption, [f"layer{i}"], [i + 1, i], reveal=[i],
                terms=terms)  # fmt: skip


def _fields(layer: Layer, x: np.ndarray, out: np.ndarray) -> dict[str, object]:
    """What the local derivatives' templates are filled with, from the layer's real arrays."""
    out64 = out.astype(np.float64)
    return {
        "W": _Shaped(layer.params["W"]) if "W" in layer.params else None,
        "x": _Shaped(x.reshape(x.shape[0], -1)),  # (N, ...) -> (N, D), as Affine sees it
        "ones": _share(x > 0),
        "sigmoid": f"{float(np.mean(out64 * (1 - out64))):.3g}",
        "tanh": f"{float(np.mean(1 - out64**2)):.3g}",
    }


def _term(
    key: str, rule: tuple[str, str] | None, upstream: str, product: str, fields: dict[str, object]
) -> Term:
    """The chain rule for one gradient of a layer, in shapes and norms."""
    formula, local = rule or (f"d{key} = backward(dout)", "the layer's own derivative")
    return Term(f"∂L/∂{key}", formula, local.format(**fields), upstream, product)


class _Shaped:
    """`{W.T}` in a template: the shape of the transposed array."""

    def __init__(self, array: np.ndarray) -> None:
        self.T = _shape(array.T.shape)  # written as the book writes a transpose


def _done_step(network: Network, traced: Trace) -> Step:
    caption = (
        f"Done: ∂L/∂input, {_norm_words(traced.input_grad)}, says how the loss moves with "
        "each input value (the heat map `bptrain serve` draws). The parameters' gradients, "
        "kept on the way back, are what the optimizer steps with."
    )
    return Step(BACKWARD, "Backward done", caption, ["input"], [0])


def _array(name: str, a: np.ndarray | None) -> str:
    if a is None:
        return f"{name}: not computed"
    return f"{name} {_shape(a.shape)}, ‖{name}‖ = {_norm(a)}"


def _norm_words(a: np.ndarray | None) -> str:
    return "not computed" if a is None else f"shape {_shape(a.shape)}, norm {_norm(a)}"


def _norm(a: np.ndarray) -> str:
    return f"{float(np.linalg.norm(a.astype(np.float64).ravel())):.4g}"


def _summary(a: np.ndarray) -> str:
    a = a.astype(np.float64)
    return (
        f"Its values: mean {a.mean():.3g}, std {a.std():.3g}, min {a.min():.3g}, max {a.max():.3g}"
    )


def _share(mask: np.ndarray) -> str:
    return f"{float(np.mean(mask)):.0%}"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
