"""Which reference a class is held against, by its name: the book's, other libraries', ours.

`Affine`, `Linear` and `Dense` all mean bptrain's `affine`; `Convolution` means `conv2d`;
`MulLayer` means the seed's multiply node. A trailing "Layer" and underscores do not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..engine.layers import LAYERS
from ..engine.losses import LOSSES
from ..errors import ConfigError
from ..registry import suggestion

Kind = Literal["node", "layer", "loss"]


@dataclass(frozen=True)
class Reference:
    """A reference: a graph node (by class name), a layer or a loss (by registry key)."""

    kind: Kind
    name: str

    def __str__(self) -> str:
        return self.name


NODES = {"mul": "MulLayer", "add": "AddLayer", "exp": "ExpLayer", "reciprocal": "ReciprocalLayer"}

# Names the book and other libraries give the same part (normalized: see `key`).
SYNONYMS = {
    "linear": "affine",
    "dense": "affine",
    "fullyconnected": "affine",
    "fc": "affine",
    "convolution": "conv2d",
    "conv": "conv2d",
    "convolution2d": "conv2d",
    "pooling": "max_pool2d",
    "maxpool": "max_pool2d",
    "maxpooling": "max_pool2d",
    "maxpooling2d": "max_pool2d",
    "avgpool": "avg_pool2d",
    "averagepooling": "avg_pool2d",
    "averagepooling2d": "avg_pool2d",
    "batchnormalization": "batch_norm",
    "batchnorm1d": "batch_norm",
    "batchnorm2d": "batch_norm",
    "bn": "batch_norm",
    "softmaxcrossentropy": "softmax_with_loss",
    "softmaxwithcrossentropy": "softmax_with_loss",
    "softmaxcrossentropyloss": "softmax_with_loss",
    "mse": "identity_with_mse",
    "meansquarederror": "identity_with_mse",
    "div": "reciprocal",
    "inverse": "reciprocal",
}


def key(name: str) -> str:
    """`ReLU_Layer` -> `relu`: case, underscores and a trailing "layer" do not count."""
    folded = re.sub(r"[_\-\s]", "", name).casefold()
    return folded.removesuffix("layer") or folded


def _table() -> dict[str, Reference]:
    table = {key(k): Reference("node", v) for k, v in NODES.items()}
    table |= {key(n): Reference("layer", n) for n in LAYERS.names()}
    table |= {key(n): Reference("loss", n) for n in LOSSES.names()}
    for synonym, target in SYNONYMS.items():
        table[synonym] = table[key(target)]
    return table


def reference_for(class_name: str) -> Reference | None:
    """The reference a class of this name is held against, or None (no reference)."""
    return _table().get(key(class_name))


def reference_named(name: str) -> Reference:
    """`--as NAME`: a registry key (`affine`), a node (`mul`) or any name `reference_for` knows."""
    found = reference_for(name)
    if found is None:
        choices = sorted({*LAYERS.names(), *LOSSES.names(), *NODES})
        raise ConfigError(
            f"--as {name}: no reference layer of that name; choices: {', '.join(choices)}",
            hint=suggestion(name, choices),
        )
    return found
