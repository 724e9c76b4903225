"""Speed, optional by nature: compiled loops (numba), Winograd convolutions, GEMM in pieces on a
fixed thread budget, BLAS thread limits, blocked im2col. The engine computes the same function
without any of it (`BPTRAIN_KERNELS=numpy`)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from . import kernels


def prepare() -> None:
    """Choose the kernels up front, before the first product runs.

    Reads and checks BPTRAIN_KERNELS (a bad value is a ConfigError, whatever the network).
    When BLAS has more than one thread, loads the compiled loops now, which sets their thread
    budget and moves the products into pieces on their threads with BLAS on one (kernels.py).
    Were that left to the first layer that asks, a network's first products would run on
    BLAS's own threads and the rest in pieces: other bits on other thread counts (an MLP
    never asked at all). On one BLAS thread every product has the one-thread bits whenever
    the loops load, so they still load on first use (an SGD MLP never pays numba's import).
    Network calls this when it is built.
    """
    if kernels.choice() != "numpy" and kernels.blas_threads() > 1:
        kernels.compiled()


def loops() -> ModuleType | None:
    """The compiled loops (accel/compiled/), or None when the NumPy code is to run: for the
    optimizers' and the weight average's one-sweep steps, which give NumPy's very bits."""
    return kernels.compiled()


def for_layer(layer: Any, x: np.ndarray, train: bool) -> ModuleType | None:
    """The accel/ way to run `layer` on `x`, or None: then the layer runs its own NumPy body.

    The answer is a module with forward(layer, x) and backward(layer, dout). Layers are
    looked up by class name: accel/ sits below the engine and never imports it.
    """
    name = _FOR_LAYER.get(type(layer).__name__)
    if name is None:
        return None
    fast = importlib.import_module(f"{__name__}.{name}")
    return fast if fast.applies(layer, x, train) else None


# Layer class -> the accel/ module that runs it fast.
_FOR_LAYER = {
    "BatchNorm": "batch_norm",
    "Conv2D": "conv",
    "MaxPool2D": "pool",
    "FusedRun": "fused",
}
