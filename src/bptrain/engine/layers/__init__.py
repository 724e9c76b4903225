"""Layers: the seed's graph nodes and every registered layer (imported here to register them).

The loss layers live in bptrain.losses; SoftmaxWithLoss is also exported here, where the seed
keeps it, beside the layers it ends.
"""

from ..losses import IdentityWithMSE, SoftmaxWithLoss
from ..nodes import AddLayer, ExpLayer, MulLayer, ReciprocalLayer
from .activations import LeakyRelu, Tanh
from .base import LAYERS, Layer, Shape
from .conv import Conv2D
from .core import Affine, Flatten, Relu, Sigmoid
from .norm import BatchNorm
from .pool import AvgPool2D, MaxPool2D
from .regularization import Dropout

__all__ = [
    "LAYERS",
    "AddLayer",
    "Affine",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dropout",
    "ExpLayer",
    "Flatten",
    "IdentityWithMSE",
    "Layer",
    "LeakyRelu",
    "MaxPool2D",
    "MulLayer",
    "ReciprocalLayer",
    "Relu",
    "Shape",
    "Sigmoid",
    "SoftmaxWithLoss",
    "Tanh",
]
