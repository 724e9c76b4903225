"""Runs of layers that may train as one pass each way: BatchNorm -> max-pool (-> ReLU), and
max-pool -> ReLU (the network runs a ReLU after the pool it precedes, see Network).

A FusedRun is planned once, when the Network is built, and is a Layer like the others: the
network's loop runs it in its members' place. By default it runs its members one by one,
the book's way; with the compiled loops, while training on a conv's pixel-major output, it
hands the work to accel/fused.py, which makes one pass over memory each way instead of
two or three and gives the members' very bits (tests compare them).
"""

from __future__ import annotations

import numpy as np

from ... import accel
from .base import Layer
from .conv import Conv2D
from .core import Relu
from .norm import BatchNorm
from .pool import MaxPool2D


class FusedRun(Layer):
    """BatchNorm -> max-pool (-> ReLU) or max-pool -> ReLU, run as one layer.

    The members keep their parameters, gradients, statistics and masks. `conv_after` is the
    conv2d right after the run, if that is what follows: the fast pass lays its output out
    as that conv reads it.
    """

    def __init__(self, members: list[Layer], conv_after: Conv2D | None = None) -> None:
        super().__init__()
        self.members = members
        self.norm = members[0] if isinstance(members[0], BatchNorm) else None
        self.pool = members[1 if self.norm is not None else 0]
        self.relu = members[-1] if isinstance(members[-1], Relu) else None
        self.conv_after = conv_after
        self.fast = None  # the accel/ pass that ran forward, if one did

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.fast = accel.for_layer(self, x, train)
        if self.fast is not None:
            return self.fast.forward(self, x)
        for layer in self.members:
            x = layer.forward(x, train=train)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        if self.fast is not None:
            return self.fast.backward(self, dout)
        for layer in reversed(self.members):
            dout = layer.backward(dout)
        return dout

    def __repr__(self) -> str:
        return f"FusedRun({', '.join(map(repr, self.members))})"


def _disjoint_pool(layer: Layer | None) -> bool:
    return type(layer) is MaxPool2D and layer.stride == layer.size


def plan(layers: list[Layer], order: list[int]) -> list[tuple[int, ...]]:
    """The execution `order` in steps: (i,) for a layer on its own, (norm, pool[, relu]) or
    (pool, relu) for a run that can go as one."""
    at = [*order, None]  # at[k]: the layer index k-th in execution, None past the end
    steps, k = [], 0
    while k < len(order):
        run = [order[k]]
        if type(layers[run[0]]) is BatchNorm and _disjoint_pool(_layer(layers, at[k + 1])):
            run.append(at[k + 1])
        if _disjoint_pool(layers[run[-1]]) and type(_layer(layers, at[k + len(run)])) is Relu:
            run.append(at[k + len(run)])
        steps.append(tuple(run))
        k += len(run)
    return steps


def _layer(layers: list[Layer], i: int | None) -> Layer | None:
    return None if i is None else layers[i]


def chain(layers: list[Layer], order: list[int], steps: list[tuple[int, ...]]) -> list[Layer]:
    """The layers the network's loop runs, in order: each step's layer, or its FusedRun."""
    result: list[Layer] = []
    for step in steps:
        if len(step) == 1:
            result.append(layers[step[0]])
            continue
        position = order.index(step[-1]) + 1
        following = layers[order[position]] if position < len(order) else None
        conv = following if type(following) is Conv2D else None
        result.append(FusedRun([layers[i] for i in step], conv_after=conv))
    return result
