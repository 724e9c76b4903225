"""Seeded inputs for a check, and the reference's answers on them.

A case is one input in one dtype: x (and y for Mul/Add, one-hot labels for a loss), the
arrays a book-style constructor takes (W, b, gamma, beta and BatchNorm's running statistics),
the constructor's options, and an upstream gradient `dout`. The reference layer is built with
the same arrays, so its forward and backward are the answers the user's class must give.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..custom.adapter import book_options
from ..custom.book import BookClass
from ..custom.names import Reference
from ..engine import nodes
from ..engine.layers import LAYERS, Layer
from ..engine.losses import LOSSES

SEEDS = (0, 1, 2)
DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
CLASSES = 5  # a loss's scores per sample

# The spec and input shape (batch first) each reference layer is checked with: small enough
# for central differences on every coordinate, big enough that a transposed or mis-summed
# gradient has a different shape (no square matrices, batch != features).
SETUPS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "affine": ({"units": 4}, (3, 6)),
    "conv2d": ({"filters": 4, "kernel": 3, "stride": 1, "padding": 1}, (2, 3, 5, 5)),
    "max_pool2d": ({"size": 2, "stride": 2}, (2, 3, 6, 6)),
    "avg_pool2d": ({"size": 2, "stride": 2}, (2, 3, 6, 6)),
    "batch_norm": ({"momentum": 0.9}, (5, 6)),
    "dropout": ({"rate": 0.4}, (4, 7)),
    "flatten": ({}, (2, 3, 2, 2)),
}
DEFAULT_SHAPE = (4, 7)  # activations and classes with no reference


@dataclass
class Case:
    """One seeded input, in one dtype."""

    seed: int
    dtype: np.dtype
    x: np.ndarray
    other: np.ndarray | None = None  # y for a binary node, one-hot labels for a loss
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    dout: np.ndarray | None = None  # None for a loss: its backward takes dout=1

    def describe(self) -> str:
        """How a learner can name this input in a message."""
        return f"input seed {self.seed}, {self.dtype}, x of shape {self.x.shape}"

    def labels(self) -> np.ndarray:
        """A loss's labels as indices (N,), from the one-hot rows."""
        assert self.other is not None
        return self.other.argmax(axis=1)

    def with_x(self, x: np.ndarray, dout: np.ndarray | None = None) -> Case:
        """The same case on another input (and an upstream gradient of its output's shape)."""
        return Case(self.seed, self.dtype, x, self.other, self.arrays, self.options, dout)


def _away_from_kinks(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No value near 0 (ReLU's kink) and no two close values (max-pool's ties)."""
    flat = x.reshape(-1)
    order = rng.permutation(flat.size)
    flat[order] = np.sign(flat[order] + 1e-12) * (0.1 + np.arange(flat.size) * 2.0 / flat.size)
    return x


def input_shape(reference: Reference | None) -> tuple[int, ...]:
    if reference is None:
        return DEFAULT_SHAPE
    if reference.kind == "loss":
        return (4, CLASSES)
    return SETUPS.get(reference.name, ({}, DEFAULT_SHAPE))[1]


def make_case(
    book: BookClass, reference: Reference | None, seed: int, dtype: np.dtype, batch: int = 0
) -> Case:
    """The seeded case `seed` in `dtype`; `batch` overrides the batch size (a loss's N=1)."""
    rng = np.random.default_rng(seed)
    shape = input_shape(reference)
    if batch:
        shape = (batch, *shape[1:])
    x = _away_from_kinks(rng.standard_normal(shape), rng)
    case = Case(seed, dtype, x.astype(dtype))
    if reference is not None and reference.kind == "loss":
        case.other = np.eye(CLASSES, dtype=dtype)[rng.integers(0, CLASSES, shape[0])]
        return case
    if book.kind == "binary":
        case.other = rng.standard_normal(shape).astype(dtype)
    if reference is not None and reference.name == "reciprocal":
        case.x = (np.sign(x) * (0.5 + np.abs(x))).astype(dtype)  # away from 1/0
    layer = reference_layer(reference, shape[1:], rng, dtype)
    if layer is not None:
        for name, array in {**layer.params, **layer.buffers}.items():
            noisy = array + 0.5 * rng.standard_normal(array.shape)  # b != 0, gamma != 1
            if name == "running_var":
                noisy = np.abs(noisy) + 0.5
            case.arrays[name] = noisy.astype(dtype)
        case.options = book_options(book, layer, {})
    out = (
        reference_forward(reference, case, layer, train=True)
        if reference
        else book_probe(book, case)
    )
    case.dout = rng.standard_normal(np.shape(out)).astype(dtype)
    return case


def book_probe(book: BookClass, case: Case) -> Any:
    """The output of the user's own class on `case` (its shape, for dout, when nothing else
    knows it). Exceptions propagate: the checks report them."""
    from .usercode import UserCodeFailed, described

    try:
        if issubclass(book.cls, Layer):
            obj = book.cls()
            obj.build(case.x.shape[1:], np.random.default_rng(case.seed), case.dtype)
        else:
            obj = book.construct({}, case.options)
        return book.forward(obj, case.x.copy(), None if case.other is None else case.other.copy())
    except Exception as error:  # the user's code may raise anything
        file = Path(str(getattr(sys.modules.get(book.cls.__module__), "__file__", "")))
        raise UserCodeFailed(f"forward raised {described(error, file)}") from None


def setup_spec(reference: Reference | None) -> dict[str, Any]:
    """The spec keys (units, filters, ...) the reference layer is checked with."""
    if reference is None or reference.kind != "layer":
        return {}
    return dict(SETUPS.get(reference.name, ({}, DEFAULT_SHAPE))[0])


def reference_layer(
    reference: Reference | None, shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype
) -> Layer | None:
    """The registry layer a reference names, built for `shape` (no batch axis)."""
    if reference is None or reference.kind != "layer":
        return None
    layer = LAYERS.build({"type": reference.name, **setup_spec(reference)})
    layer.build(shape, rng, dtype)
    return layer


def load_arrays(layer: Layer, case: Case) -> None:
    """Put the case's arrays into a reference layer (copies: the layer may update them)."""
    for name, value in case.arrays.items():
        table = layer.params if name in layer.params else layer.buffers
        np.copyto(table[name], value)


@dataclass
class Answer:
    """What a class gave: its output and every gradient by name (dx, dy, dW, ...)."""

    out: Any
    grads: dict[str, Any]


def reference_forward(
    reference: Reference, case: Case, layer: Layer | None = None, *, train: bool = True
) -> Any:
    return reference_answer(reference, case, layer, train=train, backward=False).out


def reference_answer(
    reference: Reference,
    case: Case,
    layer: Layer | None = None,
    *,
    train: bool = True,
    backward: bool = True,
) -> Answer:
    """The reference's forward (and backward) on `case`."""
    x = case.x.copy()
    if reference.kind == "node":
        node = getattr(nodes, reference.name)()
        out = node.forward(x, case.other.copy()) if case.other is not None else node.forward(x)
        if not backward:
            return Answer(out, {})
        grads = node.backward(case.dout.copy())
        grads = grads if isinstance(grads, tuple) else (grads,)
        return Answer(out, dict(zip(("dx", "dy"), grads, strict=False)))
    if reference.kind == "loss":
        loss = LOSSES.build(reference.name)
        out = loss.forward(x, case.other.copy())
        return Answer(out, {"dx": loss.backward(1)} if backward else {})
    if layer is None:
        layer = reference_layer(reference, case.x.shape[1:], np.random.default_rng(0), case.dtype)
        assert layer is not None
    load_arrays(layer, case)
    out = layer.forward(x, train=train)
    if not backward:
        return Answer(out, {})
    dx = layer.backward(case.dout.copy())
    return Answer(out, {"dx": dx, **{f"d{k}": v.copy() for k, v in layer.grads.items()}})
