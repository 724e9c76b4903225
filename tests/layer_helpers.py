"""Helpers for the layer tests: build a layer from a spec, lay arrays out in memory orders."""

from __future__ import annotations

from typing import Any

import numpy as np

from bptrain.engine.layers import LAYERS, Layer

RNG_SEED = 0


def built(spec: dict[str, Any], shape: tuple[int, ...], dtype: type = np.float64) -> Layer:
    """A layer from a registry spec, built for `shape` (no batch axis)."""
    layer = LAYERS.build(spec)
    layer.build(shape, np.random.default_rng(RNG_SEED), np.dtype(dtype))
    return layer


# Memory orders as (N, C, H, W) axes from outermost to innermost: C order, what Conv2D returns,
# and what col2im used to return.
LAYOUTS = {"C": (0, 1, 2, 3), "pixel-major": (2, 3, 0, 1), "channel-major": (1, 0, 2, 3)}


def in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """x's values as an (N, C, H, W) array whose memory is ordered as LAYOUTS[layout]."""
    axes = LAYOUTS[layout]
    return np.ascontiguousarray(x.transpose(axes)).transpose(np.argsort(axes))
