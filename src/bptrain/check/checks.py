"""The checks every class gets: forward, backward, shapes, what it leaves alone, float32.

Each check looks for one kind of mistake and words it for a learner. They are kept apart on
purpose: every call gets fresh objects and copies of the inputs, so an in-place backward fails
"leaves dout alone" and nothing else. A loss is compared with the reference on one sample at
a time: dividing by the batch is the business of its own check (checks_kinds.batch_mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cases import Case, reference_answer
from .compare import (
    LOSS_TOLERANCE,
    NUMERICAL_TOLERANCE,
    TOLERANCE,
    Difference,
    KinkWatch,
    difference,
    number,
    numerical_difference,
    numerical_gradient,
)
from .result import Result, cases, comparable, failed, passed
from .subject import Subject, UserCodeFailed


def _relation(yours: Any, other: Any) -> str:
    """A pattern a learner can act on: a flipped sign, or a constant factor."""
    a, b = np.asarray(yours, np.float64).ravel(), np.asarray(other, np.float64).ravel()
    if not np.any(b) or a.shape != b.shape:
        return ""
    if np.allclose(a, -b, rtol=1e-4, atol=1e-8 * np.abs(b).max()):
        return " (the sign is flipped)"
    ratio = np.dot(a, b) / np.dot(b, b)
    if abs(ratio - 1) > 1e-3 and np.allclose(a, ratio * b, rtol=1e-4, atol=1e-8):
        return f" (yours is {number(ratio)} times the right value)"
    return ""


def forward(subject: Subject) -> Result | None:
    """forward equals the reference's, in float64 and float32, on every seeded input."""
    if not comparable(subject.reference):
        return None
    worst: tuple[float, str, float] = (0.0, "", 0.0)
    for case in cases(subject, batch=1 if subject.is_loss else 0):
        try:
            out = subject.forward(subject.make(case), case)
        except UserCodeFailed as error:
            return failed("forward", f"{error} ({case.describe()})")
        ref = reference_answer(subject.reference, case, backward=False).out
        if np.shape(out) != np.shape(ref):
            return failed(
                "forward",
                f"forward returned shape {np.shape(out)}, the reference {np.shape(ref)} "
                f"({case.describe()})",
            )
        tolerance = (LOSS_TOLERANCE if subject.is_loss else TOLERANCE)[case.dtype]
        found = difference(out, ref)
        if found.error / tolerance > worst[0]:
            text = f"{found.at('out')}, reference {number(found.other)}{_relation(out, ref)}"
            worst = (found.error / tolerance, f"{text} ({case.describe()})", found.error)
    if worst[0] > 1:
        return failed("forward", worst[1], worst[2])
    return passed("forward", f"equals {subject.reference} on 6 inputs", worst[2])


def backward(subject: Subject) -> Result | None:
    """Every gradient equals the reference's and central differences (float64)."""
    worst: tuple[float, str, float] = (0.0, "", 0.0)
    for case in cases(subject, batch=1 if subject.is_loss else 0):
        try:
            grads = subject.answer(case)[1].grads
            found = _against_reference(subject, case, grads)
            # Central differences of a wrong forward say nothing about backward: the forward
            # check reports it, and the reference still judges backward.
            if case.dtype == np.float64 and forward_agrees(subject, case):
                found += _against_numerical(subject, case, grads)
        except UserCodeFailed as error:
            return failed("backward", f"{error} ({case.describe()})")
        for ratio, text, error in found:
            if ratio > worst[0]:
                worst = (ratio, f"{text} ({case.describe()})", error)
    if worst[0] > 1:
        return failed("backward", worst[1], worst[2])
    against = "central differences"
    if comparable(subject.reference):
        against = f"{subject.reference} and {against}"
    return passed("backward", f"every gradient equals {against}", worst[2])


def forward_agrees(subject: Subject, case: Case) -> bool:
    """Whether the class's forward gives the reference's values on `case` (True when there
    is no reference to disagree with)."""
    if not comparable(subject.reference):
        return True
    out = subject.forward(subject.make(case), case)
    ref = reference_answer(subject.reference, case, backward=False).out
    tolerance = (LOSS_TOLERANCE if subject.is_loss else TOLERANCE)[case.dtype]
    return np.shape(out) == np.shape(ref) and difference(out, ref).error <= tolerance


def _same_shape(mine: dict[str, Any], name: str, shape: tuple[int, ...]) -> bool:
    """Gradients of the wrong shape are the shapes check's business; they are skipped here."""
    return mine.get(name) is not None and np.shape(mine[name]) == shape


def _against_reference(
    subject: Subject, case: Case, grads: dict[str, Any]
) -> list[tuple[float, str, float]]:
    if not comparable(subject.reference):
        return []
    found = []
    for name, ref in reference_answer(subject.reference, case).grads.items():
        if _same_shape(grads, name, np.shape(ref)):
            d = difference(grads[name], ref)
            text = f"{d.at(name)}, reference {number(d.other)}{_relation(grads[name], ref)}"
            found.append((d.error / TOLERANCE[case.dtype], text, d.error))
    return found


def _against_numerical(
    subject: Subject, case: Case, grads: dict[str, Any]
) -> list[tuple[float, str, float]]:
    targets = {"dx": case.x}
    if subject.book.kind == "binary" and case.other is not None:
        targets["dy"] = case.other
    targets |= {f"d{k}": v for k, v in case.arrays.items() if k in ("W", "b", "gamma", "beta")}
    found = []
    for name, array in targets.items():
        if not _same_shape(grads, name, array.shape):
            continue
        numerical, chosen = numerical_gradient(_scalar(subject, case), array, case.seed)
        d: Difference = numerical_difference(grads[name], numerical, chosen)
        text = f"{d.at(name)}, central difference {number(d.other)}"
        found.append((d.error / NUMERICAL_TOLERANCE, text, d.error))
    return found


def _scalar(subject: Subject, case: Case) -> Any:
    """The number central differences differentiate: the loss, or sum(out * dout)."""

    def f(watch: KinkWatch) -> float:
        obj = subject.make(case)  # a fresh object on the case's (nudged) arrays
        out = subject.forward(obj, case)
        watch.observe(obj)
        if subject.is_loss:
            return float(out)
        return float(np.vdot(np.asarray(out, np.float64), case.dout))

    return f


def expected_shapes(subject: Subject, case: Case) -> dict[str, tuple[int, ...]]:
    """dx has x's shape, dy y's, and every parameter's gradient the parameter's."""
    shapes = {"dx": case.x.shape}
    if subject.book.kind == "binary" and case.other is not None:
        shapes["dy"] = case.other.shape
    shapes |= {f"d{k}": v.shape for k, v in case.arrays.items() if k in ("W", "b", "gamma", "beta")}
    return shapes


def shapes(subject: Subject) -> Result | None:
    """Each gradient has the shape of what it is the gradient of (the seed's point)."""
    for case in cases(subject, dtypes=(np.dtype(np.float64),)):
        try:
            grads = subject.answer(case)[1].grads
        except UserCodeFailed as error:
            return failed("shapes", f"{error} ({case.describe()})")
        for name, shape in expected_shapes(subject, case).items():
            found = grads.get(name)
            if found is None:
                where = (
                    f"self.{name} or self.grads['{name[1:]}']"
                    if name not in ("dx", "dy")
                    else "return it"
                )
                return failed("shapes", f"backward left no {name} ({where}) ({case.describe()})")
            if np.shape(found) != shape:
                return failed("shapes", _shape_message(name, np.shape(found), shape, case))
    return passed("shapes", "dx has x's shape and every gradient its parameter's")


def _shape_message(name: str, found: tuple[int, ...], shape: tuple[int, ...], case: Case) -> str:
    """Say what a wrong shape most likely means."""
    text = (
        f"{name} has shape {found} but {name[1:]} has {shape}: a gradient has the shape of "
        "what it is the gradient of"
    )
    if len(found) == 2 and found[::-1] == shape:
        text += f"; {name} is transposed (dW = np.dot(self.x.T, dout))"
    elif name == "db" and found in ((case.x.shape[0],), ()):
        text += "; db is summed over the wrong axis (db = np.sum(dout, axis=0): over the batch)"
    return f"{text} ({case.describe()})"


def leaves_dout(subject: Subject) -> Result | None:
    """backward must not write into the gradient it is given: the caller may still need it."""
    if subject.is_loss:
        return None
    for case in cases(subject, dtypes=(np.dtype(np.float64),)):
        try:
            obj = subject.make(case)
            subject.forward(obj, case)
            dout = case.dout.copy()
            subject.backward(obj, dout)
        except UserCodeFailed as error:
            return failed("leaves_dout", f"{error} ({case.describe()})")
        changed = np.argwhere(dout != case.dout)
        if changed.size:
            index = tuple(map(int, changed[0]))
            example = "dout[self.mask] = 0" if hasattr(obj, "mask") else "dout[...] = ..."
            return failed(
                "leaves_dout",
                f"backward changed its argument dout (the caller's gradient): dout{list(index)} "
                f"was {number(case.dout[index])}, is {number(dout[index])} after backward. "
                f"Return a new array instead of writing `{example}` (e.g. dx = dout.copy() "
                f"first) ({case.describe()})",
            )
    return passed("leaves_dout", "backward leaves its dout alone")


def leaves_x(subject: Subject) -> Result | None:
    """forward must not write into its input: the layer before it may still need it."""
    for case in cases(subject, dtypes=(np.dtype(np.float64),)):
        x = case.x.copy()
        other = None if case.other is None else case.other.copy()
        try:
            obj = subject.make(case)
            if subject.book.train_flag is not None:
                np.random.seed(case.seed)
            subject.call("forward", subject.book.forward, obj, x, other)
        except UserCodeFailed as error:
            return failed("leaves_x", f"{error} ({case.describe()})")
        for name, given, kept in (
            ("x", x, case.x),
            ("y" if not subject.is_loss else "t", other, case.other),
        ):
            if given is not None and not np.array_equal(given, kept):
                index = tuple(map(int, np.argwhere(given != kept)[0]))
                return failed(
                    "leaves_x",
                    f"forward changed its input {name}: {name}{list(index)} was "
                    f"{number(kept[index])}, is {number(given[index])}. Work on a copy "
                    f"(out = {name}.copy()) ({case.describe()})",
                )
    return passed("leaves_x", "forward leaves its input alone")


def second_forward(subject: Subject) -> Result | None:
    """A second forward replaces what the first cached: backward answers for the last input."""
    from .cases import make_case

    for case in cases(subject, dtypes=(np.dtype(np.float64),)):
        other = make_case(
            subject.book, subject.reference, case.seed + 10, case.dtype, case.x.shape[0]
        )
        last = Case(
            case.seed, case.dtype, other.x, other.other, case.arrays, case.options, case.dout
        )
        try:
            obj = subject.make(case)
            subject.forward(obj, case)
            out = subject.forward(obj, last)
            grads = subject.backward(obj, 1 if subject.is_loss else case.dout.copy())
            _, fresh = subject.answer(last)
        except UserCodeFailed as error:
            return failed("second_forward", f"{error} ({case.describe()})")
        for name, value in {"out": out, **grads}.items():
            right = fresh.out if name == "out" else fresh.grads.get(name)
            if value is None or right is None or np.shape(value) != np.shape(right):
                continue
            d = difference(value, right)
            if d.error > 1e-12:
                return failed(
                    "second_forward",
                    f"after forward(x1) then forward(x2), {d.at(name)} where a fresh object "
                    f"gives {number(d.other)}: the second forward did not replace what the "
                    f"first one cached. Set the cache (self.x, self.mask, ...) on every forward "
                    f"({case.describe()})",
                    d.error,
                )
    return passed("second_forward", "a second forward replaces what the first one cached")


def float32(subject: Subject) -> Result | None:
    """float32 in, float32 out: a float64 array makes the next layer's work twice as slow."""
    for case in cases(subject, dtypes=(np.dtype(np.float32),)):
        try:
            answer = subject.answer(case)[1]
        except UserCodeFailed as error:
            return failed("float32", f"{error} ({case.describe()})")
        found = {"out": answer.out, **answer.grads} if not subject.is_loss else answer.grads
        for name, value in found.items():
            if isinstance(value, np.ndarray) and value.dtype != np.float32:
                return failed(
                    "float32",
                    f"{name} is {value.dtype} for float32 input: a float64 constant or array "
                    f"crept in (np.zeros without dtype=, a float64 parameter) ({case.describe()})",
                )
    return passed("float32", "float32 stays float32")
