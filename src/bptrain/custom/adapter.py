"""A class written the book's way, as a bptrain layer: it trains like a built-in one.

The reference layer of the same name (custom/names.py) reads the spec's keys (`units: 100`,
`init: he`), makes the parameters and knows the output shape; the user's class is then made
with those very arrays, `Affine(W, b)`, and does all the computing. Before each forward the
layer hands the object the arrays the optimizer updates; after backward it copies the
object's `dW`, `db` ... into the gradient arrays the optimizer reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..engine.layers import LAYERS, Layer, Shape
from ..errors import ConfigError
from ..registry import short_type
from .book import BookClass, kink_state
from .names import reference_for

# The book's constructor options and the reference attribute that holds the same setting.
BOOK_OPTIONS = {
    "stride": "stride",
    "pad": "pad",
    "padding": "pad",
    "pool_h": "size",
    "pool_w": "size",
    "pool_size": "size",
    "dropout_ratio": "rate",
    "rate": "rate",
    "momentum": "momentum",
    "eps": "eps",
    "alpha": "alpha",
}


def as_layer(cls: type, type_name: str, source: Mapping[str, Any]) -> type[Layer]:
    """A Layer class for `cls`, to register as `type_name`; `source` is kept on it for records.

    A subclass of bptrain's Layer already speaks the protocol and is used as it is.
    """
    label = short_type(type_name)
    if isinstance(cls, type) and issubclass(cls, Layer):
        attrs = {
            "name": type_name,
            "label": label,
            "source": dict(source),
            "__module__": cls.__module__,
        }
        return type(cls.__name__, (cls,), attrs)
    book = BookClass.of(cls)
    if book.kind != "unary":
        what = "two inputs, forward(x, y)" if book.kind == "binary" else "labels, forward(x, t)"
        raise ConfigError(
            f"{type_name}: {book.name} takes {what}; a layer of the stack takes one input",
            hint=f"check it with: bptrain check {source.get('file', 'FILE.py')}:{book.name}",
        )
    reference = reference_for(book.name)
    ref_name = reference.name if reference is not None and reference.kind == "layer" else None
    if ref_name is None and book.array_args:
        raise ConfigError(
            f"{type_name}: {book.name} takes arrays ({', '.join(book.array_args)}) but bptrain "
            "has no layer of that name to make them",
            hint="name the class after its reference (Affine, Convolution, BatchNormalization) "
            "or write it as a bptrain Layer with a build() method",
        )
    attrs = {
        "name": type_name,
        "label": label,
        "source": dict(source),
        "book": book,
        "reference_name": ref_name,
        "__init__": _init_with_signature(book, ref_name),
        "__module__": cls.__module__,
    }
    return type(book.name, (BookLayer,), attrs)


def _init_with_signature(book: BookClass, ref_name: str | None) -> Any:
    """`__init__(**options)` with a signature the registry checks config keys against."""

    def __init__(self: BookLayer, **options: Any) -> None:
        BookLayer.__init__(self, **options)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    reference_keys = LAYERS.parameters(ref_name) if ref_name else {}
    for key, (annotation, default) in reference_keys.items():
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default))
        annotations[key] = annotation
    for key, default in book.options.items():
        if key not in reference_keys and BOOK_OPTIONS.get(key) not in reference_keys:
            params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default))
            annotations[key] = Any
    __init__.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    __init__.__annotations__ = annotations
    return __init__


def book_options(
    book: BookClass, reference: Layer | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The constructor's options: given in the spec, else the reference's resolved value
    (Pooling's stride is the window size unless the spec says otherwise, as in bptrain)."""
    values = {}
    for key in book.options:
        if key in given:
            values[key] = given[key]
        elif hasattr(reference, BOOK_OPTIONS.get(key, "")):
            value = getattr(reference, BOOK_OPTIONS[key])
            same = isinstance(value, tuple) and len(set(value)) == 1
            values[key] = value[0] if same else value  # conv's (pad, pad) -> the book's pad
    return values


class BookLayer(Layer):
    """Runs a book-style object inside the network; see the module's docstring."""

    book: ClassVar[BookClass]
    reference_name: ClassVar[str | None]
    source: ClassVar[dict[str, Any]]

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options
        self.reference: Layer | None = None
        if self.reference_name is not None:
            keys = LAYERS.parameters(self.reference_name)
            spec = {k: v for k, v in options.items() if k in keys}
            self.reference = LAYERS.build({"type": self.reference_name, **spec})
        self.obj: Any = None
        self.rng: np.random.Generator | None = None

    def build(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> Shape:
        shape = input_shape
        arrays: dict[str, np.ndarray] = {}
        if self.reference is not None:
            shape = tuple(self.reference.build(input_shape, rng, dtype))
            self._set_params(**self.reference.params)
            self.buffers = dict(self.reference.buffers)
            arrays = {**self.params, **self.buffers}
        self.rng = rng
        try:
            self.obj = self.book.construct(
                arrays, book_options(self.book, self.reference, self.options)
            )
        except Exception as error:  # the user's constructor may raise anything
            raise ConfigError(
                f"{self.book.name}({', '.join(self.book.array_args)}) raised "
                f"{type(error).__name__}: {error}"
            ) from None
        found = self._output_shape(input_shape, dtype)
        if self.reference is not None and found != shape:
            raise ConfigError(
                f"{self.book.name} gives output of shape {found} where {self.reference_name} "
                f"gives {shape} for the same settings",
                hint=f"check it with: bptrain check FILE.py:{self.book.name}",
            )
        return found

    def _output_shape(self, input_shape: Shape, dtype: np.dtype) -> Shape:
        """Run the object once on zeros (inference mode) to learn its output shape."""
        try:
            out = self.forward(np.zeros((2, *input_shape), dtype=dtype), train=False)
        except Exception as error:  # the user's forward may raise anything
            raise ConfigError(
                f"{self.book.name}.forward raised {type(error).__name__}: {error} on input of "
                f"shape {(2, *input_shape)}"
            ) from None
        return tuple(np.shape(out)[1:])

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        for name, value in {**self.params, **self.buffers}.items():
            self.book.set_parameter(self.obj, name, value)
        if train and self.book.train_flag is not None and self.rng is not None:
            # The book's Dropout draws from np.random: seed it from the run's generator so a
            # seeded run, a resume and a gradient check all draw the same masks.
            np.random.seed(int(self.rng.integers(2**32)))
        out = self.book.forward(self.obj, x, train=train)
        for name, kept in self.buffers.items():  # the book rebinds running_mean; copy it back
            value = self.book.parameter(self.obj, name)
            if value is not None and value is not kept:
                np.copyto(kept, value)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = self.book.backward(self.obj, dout)[0]
        for name, kept in self.grads.items():
            value = self.book.gradient(self.obj, name)
            if value is None or np.shape(value) != kept.shape:
                found = "nothing" if value is None else f"shape {np.shape(value)}"
                raise ConfigError(
                    f"{self.book.name}.backward left {found} as the gradient of {name}; "
                    f"expected shape {kept.shape} (d{name} or grads['{name}'])",
                    hint=f"check it with: bptrain check FILE.py:{self.book.name}",
                )
            np.copyto(kept, value)
        return dx

    def kink_state(self) -> tuple[np.ndarray, ...]:
        return kink_state(self.obj)

    def __repr__(self) -> str:
        return f"{self.book.name}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"
