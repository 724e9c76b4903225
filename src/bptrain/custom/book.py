"""How to call a class written the book's way: its constructor, forward, backward and gradients.

The book's classes are plain: `Affine(W, b)` keeps the arrays it is given, `forward(x)` (or
`forward(x, y)` for Mul/Add, `forward(x, t)` for a loss, `forward(x, train_flg)` for Dropout
and BatchNorm) caches what `backward(dout)` needs, and backward returns dx (or dx, dy) and
leaves the parameter gradients in attributes `dW`, `db`, ... or in a dict `grads`. `BookClass`
reads a class's signatures once and then calls any instance of it that way.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError

# Constructor parameters that take arrays, and the reference's name for each.
ARRAY_ARGS = {
    "w": "W",
    "weight": "W",
    "weights": "W",
    "b": "b",
    "bias": "b",
    "gamma": "gamma",
    "beta": "beta",
    "running_mean": "running_mean",
    "running_var": "running_var",
}
TRAIN_FLAGS = frozenset({"train_flg", "train_flag", "train", "training", "is_training"})
LABELS = frozenset({"t", "label", "labels", "target", "targets", "y_true"})

Kind = Literal["unary", "binary", "loss"]


def _positional(function: Any) -> list[inspect.Parameter]:
    """The parameters after `self` that can be passed by position."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(inspect.signature(function).parameters.values())[1:]
    return [p for p in params if p.kind in kinds]


@dataclass(frozen=True)
class BookClass:
    """A class's calling conventions, read from its signatures."""

    cls: type
    kind: Kind
    train_flag: str | None  # forward's train flag (`train_flg`), if it takes one
    array_args: tuple[str, ...]  # constructor parameters that take arrays, in order
    options: Mapping[str, Any]  # the constructor's other parameters -> their defaults
    backward_takes_dout: bool

    @classmethod
    def of(cls, user_cls: type) -> BookClass:
        """Read `user_cls`'s signatures; a ConfigError when it has no forward or backward."""
        for method in ("forward", "backward"):
            if not callable(getattr(user_cls, method, None)):
                raise ConfigError(
                    f"class {user_cls.__name__} has no {method}() method",
                    hint="a layer needs forward(x) and backward(dout), as the book writes them",
                )
        forward = _positional(user_cls.forward)
        if not forward:
            raise ConfigError(f"{user_cls.__name__}.forward takes no input x")
        second = forward[1].name if len(forward) > 1 else None
        kind: Kind = "unary"
        if second is not None and second.casefold() in LABELS:
            kind = "loss"
        elif (
            second is not None
            and second not in TRAIN_FLAGS
            and forward[1].default is inspect.Parameter.empty
        ):
            kind = "binary"
        init = _positional(user_cls.__init__) if "__init__" in _own_attrs(user_cls) else []
        arrays = tuple(p.name for p in init if p.name.casefold() in ARRAY_ARGS)
        options = {p.name: p.default for p in init if p.name not in arrays}
        return cls(
            cls=user_cls,
            kind=kind,
            train_flag=second if second in TRAIN_FLAGS else None,
            array_args=arrays,
            options=options,
            backward_takes_dout=bool(_positional(user_cls.backward)),
        )

    @property
    def name(self) -> str:
        return self.cls.__name__

    def required_options(self) -> list[str]:
        """Constructor options without a default (a reference cannot fill them in)."""
        return [k for k, v in self.options.items() if v is inspect.Parameter.empty]

    def construct(self, arrays: Mapping[str, np.ndarray], options: Mapping[str, Any]) -> Any:
        """An instance: arrays by their reference names (W, b, gamma, ...), options by name."""
        kwargs: dict[str, Any] = {}
        for arg in self.array_args:
            reference_name = ARRAY_ARGS[arg.casefold()]
            if reference_name in arrays:
                kwargs[arg] = arrays[reference_name]
        kwargs |= {k: v for k, v in options.items() if k in self.options}
        return self.cls(**kwargs)

    def forward(self, obj: Any, x: Any, other: Any = None, *, train: bool = True) -> Any:
        """obj.forward the class's way: (x), (x, y), (x, t) or (x, train_flg)."""
        if self.kind in ("binary", "loss"):
            return obj.forward(x, other)
        if self.train_flag is not None:
            return obj.forward(x, train)
        return obj.forward(x)

    def backward(self, obj: Any, dout: Any) -> tuple[Any, ...]:
        """obj.backward, its result as a tuple: (dx,) or (dx, dy)."""
        result = obj.backward(dout) if self.backward_takes_dout else obj.backward()
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    def parameter(self, obj: Any, name: str) -> Any:
        """The array the object uses as parameter `name` (attribute W or params["W"])."""
        return _attribute_or_entry(obj, [name, name.casefold()], "params")

    def set_parameter(self, obj: Any, name: str, value: np.ndarray) -> None:
        """Make the object use `value` as parameter `name`, where it keeps it."""
        params = getattr(obj, "params", None)
        if isinstance(params, dict) and name in params:
            params[name] = value
            return
        for attr in (name, name.casefold()):
            if attr in vars(obj):
                setattr(obj, attr, value)
                return
        setattr(obj, name, value)

    def gradient(self, obj: Any, name: str) -> Any:
        """The gradient backward left for parameter `name`: dW, db, dgamma ... or grads[name]."""
        return _attribute_or_entry(obj, [f"d{name}", f"d{name.casefold()}"], "grads", name)


def _own_attrs(cls: type) -> set[str]:
    """Names defined by the class or a base that is not `object`."""
    return {name for klass in cls.__mro__ if klass is not object for name in vars(klass)}


def _attribute_or_entry(obj: Any, attrs: list[str], table: str, entry: str | None = None) -> Any:
    for attr in attrs:
        value = getattr(obj, attr, None)
        if value is not None and not callable(value):
            return value
    found = getattr(obj, table, None)
    if isinstance(found, Mapping):
        return found.get(entry or attrs[0])
    return None


def kink_state(obj: Any) -> tuple[np.ndarray, ...]:
    """What changes when an input crosses a kink: the object's boolean and integer arrays.

    The book's Relu keeps `mask`, its Pooling `arg_max`; comparing them before and after a
    nudge tells a gradient check that the nudge stepped over a point where the slope jumps.
    """
    return tuple(
        value.copy()
        for value in vars(obj).values()
        if isinstance(value, np.ndarray) and value.dtype.kind in "biu"
    )
