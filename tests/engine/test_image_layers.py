"""Every conv and pooling layer: gradients against central differences, float32 in and out,
and a backward that leaves its upstream gradient untouched."""

from __future__ import annotations

import numpy as np
import pytest

from bptrain.engine.gradcheck import check_layer
from bptrain.engine.layers import AvgPool2D, Conv2D, MaxPool2D
from layer_helpers import built

SPECS = [
    (Conv2D.example["spec"], Conv2D.example["input_shape"]),
    ({"type": "conv2d", "filters": 2, "kernel": 3, "padding": "same"}, (3, 4, 4)),
    ({"type": "conv2d", "filters": 3, "kernel": [1, 2], "stride": 3}, (1, 5, 7)),
    (MaxPool2D.example["spec"], MaxPool2D.example["input_shape"]),
    (AvgPool2D.example["spec"], AvgPool2D.example["input_shape"]),
    ({"type": "max_pool2d", "size": 2}, (2, 4, 5)),
    ({"type": "avg_pool2d", "size": 3, "stride": 2}, (1, 7, 5)),
]


@pytest.mark.parametrize(("spec", "shape"), SPECS)
def test_gradients_match_numerical(spec: dict, shape: tuple) -> None:
    report = check_layer(spec, shape, batch=3)
    assert report.ok, report.to_record()
    assert all(p.checked > 0 for p in report.parameters)


@pytest.mark.parametrize(("spec", "shape"), SPECS)
def test_float32_in_float32_out_and_dout_untouched(spec: dict, shape: tuple) -> None:
    rng = np.random.default_rng(7)
    layer = built(spec, shape, np.float32)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    out = layer.forward(x, train=True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    kept = dout.copy()
    dx = layer.backward(dout)
    assert out.dtype == dx.dtype == np.float32
    assert all(a.dtype == np.float32 for a in [*layer.params.values(), *layer.grads.values()])
    np.testing.assert_array_equal(dout, kept)
    assert dx.shape == x.shape
