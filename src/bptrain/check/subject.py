"""The class under check: made and called the book's way, its exceptions turned into words.

Every call gets copies of the case's arrays, so one check's mutation never leaks into
another: only the checks that look for mutation hand over arrays they keep.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..custom.book import BookClass
from ..custom.names import Reference
from ..engine.layers import Layer
from .cases import Answer, Case, setup_spec
from .usercode import UserCodeFailed, described

T = TypeVar("T")

TRAINED = ("W", "b", "gamma", "beta")  # arrays with gradients; running statistics have none


@dataclass
class Subject:
    """A user's class, the reference it is held against, and how to call it."""

    book: BookClass
    reference: Reference | None
    file: Path

    @property
    def name(self) -> str:
        return self.book.name

    @property
    def is_loss(self) -> bool:
        return self.book.kind == "loss"

    def call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """function(...), or UserCodeFailed naming `what` and the line of the user's file."""
        try:
            return function(*args, **kwargs)
        except Exception as error:  # the user's code may raise anything
            raise UserCodeFailed(f"{what} raised {described(error, self.file)}") from None

    def make(self, case: Case) -> Any:
        if issubclass(self.book.cls, Layer):
            return self.call(f"{self.name}()", self._built_layer, case)
        arrays = {k: v.copy() for k, v in case.arrays.items()}
        return self.call(f"{self.name}()", self.book.construct, arrays, case.options)

    def _built_layer(self, case: Case) -> Layer:
        """A bptrain Layer subclass, made from the reference's spec keys it accepts and built
        for the case's input, with the case's arrays copied into its parameters."""
        accepted = inspect.signature(self.book.cls).parameters
        spec = setup_spec(self.reference)
        layer = self.book.cls(**{k: v for k, v in spec.items() if k in accepted})
        layer.build(case.x.shape[1:], np.random.default_rng(case.seed), case.dtype)
        for name, value in case.arrays.items():
            table = layer.params if name in layer.params else layer.buffers
            if name in table and table[name].shape == value.shape:
                np.copyto(table[name], value)
        return layer

    def forward(self, obj: Any, case: Case, *, train: bool = True, other: Any = None) -> Any:
        """forward on copies of the case's input (and y or labels)."""
        if other is None and case.other is not None:
            other = case.other.copy()
        if self.book.train_flag is not None:
            np.random.seed(case.seed)  # the book's Dropout draws from np.random
        return self.call("forward", self.book.forward, obj, case.x.copy(), other, train=train)

    def backward(self, obj: Any, dout: Any) -> dict[str, Any]:
        """backward(dout): dx (and dy), then every parameter gradient the object left."""
        found = self.call("backward", self.book.backward, obj, dout)
        grads = dict(zip(("dx", "dy"), found, strict=False))
        for name in self.trained(obj):
            grads[f"d{name}"] = self.book.gradient(obj, name)
        return grads

    def trained(self, obj: Any) -> list[str]:
        """The parameters the class keeps (W, b, gamma, beta), by their reference names."""
        return [name for name in TRAINED if self.book.parameter(obj, name) is not None]

    def answer(self, case: Case, *, train: bool = True) -> tuple[Any, Answer]:
        """A fresh object's forward and backward on `case` (the object too, for its state)."""
        obj = self.make(case)
        out = self.forward(obj, case, train=train)
        dout = 1 if self.is_loss else case.dout.copy()
        return obj, Answer(out, self.backward(obj, dout))
