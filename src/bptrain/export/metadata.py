"""What an exported file says about itself: strings only, as ONNX's metadata_props and the
safetensors header both require.

A reader of the file alone learns the classes, the dataset, how to prepare an image, which
weights these are and how well they did, without bptrain or the checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..run.model import Model

# What `bptrain predict --preprocess STYLE` does to an image before the network sees it.
STYLE_WORDS = {
    "digits": "MNIST's convention: light ink on a dark background, the digit fitted into a "
    "20x20 box and centred by its centre of mass in the 28x28 field, the strongest ink 1.0",
    "fashion": "Fashion-MNIST's convention: the article light on a dark background, fitted "
    "into the field and centred, the brightest pixel 1.0",
    "none": "no preparation beyond the scaling: images already of the network's input size",
}


def preprocessing(model: Model) -> str:
    """The input convention in words: the scaling bptrain's loader applies, and the rest."""
    from ..predict.classify import style_for  # the one place a dataset's convention is chosen

    style = style_for(model, "auto")
    shape = ", ".join(str(d) for d in model.info.input_shape)
    return (
        f"float32 pixels in [0, 1] (the byte value / 255, 0 = background), shaped (N, {shape}); "
        f"no mean or standard deviation is subtracted. Images are prepared as "
        f"`bptrain predict --preprocess {style}` prepares them: {STYLE_WORDS[style]}"
    )


def describe(model: Model) -> dict[str, str]:
    """The metadata every exported file carries (ONNX and safetensors alike)."""
    ckpt, info = model.ckpt, model.info
    meta: dict[str, Any] = {
        "producer": "bptrain",
        "bptrain_version": __version__,
        "class_names": json.dumps(list(info.class_names)),
        "dataset": info.dataset,
        "input_shape": json.dumps(["N", *info.input_shape]),
        "preprocessing": preprocessing(model),
        "weights": model.weights,
        "complete": json.dumps(ckpt.complete),
        "epochs": str(ckpt.epochs),
        "checkpoint": ckpt.path.name,
    }
    accuracy = ckpt.metrics.get("test_accuracy")
    if accuracy is not None:  # an unfinished run was never tested
        meta["test_accuracy"] = repr(float(accuracy))
        # The summary tested the weights it chose; --weights may have picked others.
        meta["test_accuracy_weights"] = ckpt.weights
    return meta
