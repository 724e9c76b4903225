"""Layers: the seed's graph nodes and every registered layer (imported here to register them)."""

from .base import LAYERS, Layer, Shape
from .core import Affine, Flatten, Relu, Sigmoid
from .graph import AddLayer, MulLayer

__all__ = [
    "LAYERS",
    "AddLayer",
    "Affine",
    "Flatten",
    "Layer",
    "MulLayer",
    "Relu",
    "Shape",
    "Sigmoid",
]
