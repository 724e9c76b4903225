"""Layers: the seed's graph nodes and every registered layer (imported here to register them)."""

from .activations import LeakyRelu, Tanh
from .base import LAYERS, Layer, Shape
from .conv import AvgPool2D, Conv2D, MaxPool2D
from .core import Affine, Flatten, Relu, Sigmoid
from .graph import AddLayer, MulLayer
from .norm import BatchNorm
from .regularization import Dropout

__all__ = [
    "LAYERS",
    "AddLayer",
    "Affine",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyRelu",
    "MaxPool2D",
    "MulLayer",
    "Relu",
    "Shape",
    "Sigmoid",
    "Tanh",
]
