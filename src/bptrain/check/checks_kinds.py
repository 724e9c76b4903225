"""Checks for some kinds of class: large inputs (all), tensor input (Affine), the two label
forms and the batch mean (losses), inference (classes with a train flag: Dropout, BatchNorm)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .cases import Case, reference_answer
from .checks import forward_agrees
from .compare import LOSS_TOLERANCE, TOLERANCE, difference, number
from .result import Result, cases, comparable, failed, passed
from .subject import Subject, UserCodeFailed

LARGE = 1000.0
LOG_FLOOR = -np.log(1e-7)  # the book's log(y + 1e-7) never exceeds this per sample


def _large(case: Case) -> Case:
    """The case with x drawn from [-1000, 1000], both ends included."""
    rng = np.random.default_rng(case.seed + 100)
    x = rng.uniform(-LARGE, LARGE, case.x.shape)
    x.reshape(-1)[:2] = (-LARGE, LARGE)
    return case.with_x(x.astype(case.dtype), case.dout)


def _warned(run: Callable[[], Any]) -> tuple[Any, list[str]]:
    """run()'s result and the RuntimeWarnings (overflow, invalid value) NumPy gave during it."""
    with (
        warnings.catch_warnings(record=True) as caught,
        np.errstate(over="warn", invalid="warn", divide="warn"),
    ):
        warnings.simplefilter("always")
        result = run()
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _which_side(subject: Subject, case: Case) -> str:
    """'large negative x' or 'large positive x': which end makes forward warn."""
    sides = []
    for sign, word in ((-1, "negative"), (1, "positive")):
        x = np.full(case.x.shape, sign * LARGE, dtype=case.dtype)
        try:
            _, found = _warned(partial(subject.forward, subject.make(case), case.with_x(x)))
        except UserCodeFailed:
            continue
        if found:
            sides.append(f"large {word} x (x = {sign * LARGE:g})")
    return " and ".join(sides) or "large x"


def large_inputs(subject: Subject) -> Result | None:
    """|x| up to 1000: no overflow warning, no inf or NaN, and (where one exists) the
    reference's values. exp(x) overflows float64 past x = 709, float32 past 88."""
    for base in cases(subject):
        if base.seed:
            continue  # one input per dtype
        case = _large(base)
        try:
            obj = subject.make(case)
            out, forward_warnings = _warned(partial(subject.forward, obj, case))
            dout = 1 if subject.is_loss else case.dout.copy()
            grads, backward_warnings = _warned(partial(subject.backward, obj, dout))
        except UserCodeFailed as error:
            return failed("large_inputs", f"{error} ({case.describe()}, |x| up to 1000)")
        if forward_warnings:
            return failed(
                "large_inputs",
                f"forward warned '{forward_warnings[0]}' for {_which_side(subject, case)} "
                f"({case.describe()}): np.exp of a large argument overflows; rewrite it so "
                "exp only sees arguments <= 0, e.g. sigmoid(x) = exp(min(x, 0)) / (1 + "
                "exp(-|x|))",
            )
        if backward_warnings:
            return failed(
                "large_inputs",
                f"backward warned '{backward_warnings[0]}' ({case.describe()}, |x| up to 1000)",
            )
        for name, value in {"out": out, **grads}.items():
            if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
                return failed(
                    "large_inputs", f"{name} has inf or NaN for |x| up to 1000 ({case.describe()})"
                )
        problem = _large_against_reference(subject, case, base, out)
        if problem:
            return failed("large_inputs", problem)
    return passed("large_inputs", "|x| up to 1000: no overflow, no inf or NaN")


def _large_against_reference(subject: Subject, case: Case, base: Case, out: Any) -> str:
    """Values that agree with the reference at normal scale must agree at |x| up to 1000
    (a forward wrong everywhere is the forward check's business)."""
    if not comparable(subject.reference) or not forward_agrees(subject, base):
        return ""
    answer = reference_answer(subject.reference, case, backward=False)
    tolerance = (LOSS_TOLERANCE if subject.is_loss else TOLERANCE)[case.dtype]
    for name, mine, ref in (("out", out, answer.out),):
        if np.shape(mine) != np.shape(ref):
            continue
        d = difference(mine, ref)
        if d.error > tolerance:
            text = (
                f"{d.at(name)}, reference {number(d.other)} for |x| up to 1000 ({case.describe()})"
            )
            if subject.is_loss and name == "out" and float(mine) < float(ref):
                text += (
                    f": the loss is clipped. log(y + 1e-7) caps each sample's loss at "
                    f"{LOG_FLOOR:.1f} once y underflows to 0; compute it from log-softmax, "
                    "x - max(x) - log(sum(exp(x - max(x))))"
                )
            return text
    return ""


def tensor_input(subject: Subject) -> Result | None:
    """Affine takes (N, C, H, W) input, as the seed's tensor version does, and hands dx back
    in that shape."""
    if subject.reference is None or subject.reference.name != "affine":
        return None
    for base in cases(subject):
        n, features = base.x.shape
        case = base.with_x(base.x.reshape(n, features // 3, 1, 3), base.dout)
        try:
            answer = subject.answer(case)[1]
        except UserCodeFailed as error:
            return failed(
                "tensor_input",
                f"{error} on 4-D input {case.x.shape}: reshape x to (N, -1) in forward and dx "
                "back to x's shape in backward (the seed's tensor version)",
            )
        dx = answer.grads.get("dx")
        if np.shape(dx) != case.x.shape:
            return failed(
                "tensor_input",
                f"dx has shape {np.shape(dx)} for 4-D input {case.x.shape}: reshape it back "
                "(dx.reshape(*self.original_x_shape))",
            )
        flat = subject.answer(base)[1]  # the class's own answer on the flattened input
        for name, mine, own in (("out", answer.out, flat.out), ("dx", dx, flat.grads.get("dx"))):
            if name == "dx" and np.size(mine) == np.size(own):
                mine = np.reshape(mine, np.shape(own))
            if (
                np.shape(mine) != np.shape(own)
                or difference(mine, own).error > TOLERANCE[case.dtype]
            ):
                return failed(
                    "tensor_input",
                    f"{name} on 4-D input {case.x.shape} differs from {name} on the same input "
                    f"flattened to {base.x.shape} ({case.describe()})",
                )
    return passed("tensor_input", "takes 4-D input and gives dx in its shape")


def label_forms(subject: Subject) -> Result | None:
    """A loss takes labels as indices (N,) and as one-hot rows (N, C), with the same result."""
    if not subject.is_loss:
        return None
    for case in cases(subject):
        try:
            obj, onehot = subject.answer(case)
        except UserCodeFailed as error:
            return failed("label_forms", f"with one-hot labels: {error} ({case.describe()})")
        try:
            obj = subject.make(case)
            loss = subject.forward(obj, case, other=case.labels())
            grads = subject.backward(obj, 1)
        except UserCodeFailed as error:
            return failed(
                "label_forms",
                f"with labels as indices, shape {case.labels().shape}: {error}. Handle both: "
                "if t.size == y.size: dx = (y - t) / N, else dx = y.copy(); "
                "dx[np.arange(N), t] -= 1; dx /= N",
            )
        for name, a, b in (
            ("loss", loss, onehot.out),
            ("dx", grads.get("dx"), onehot.grads.get("dx")),
        ):
            if np.shape(a) != np.shape(b) or difference(a, b).error > TOLERANCE[case.dtype]:
                return failed(
                    "label_forms",
                    f"{name} differs between labels as indices and as one-hot rows "
                    f"({case.describe()})",
                )
    return passed("label_forms", "labels as indices and as one-hot rows give the same loss and dx")


def batch_mean(subject: Subject) -> Result | None:
    """A batch's loss is the mean of its samples' losses, and dx each sample's gradient / N."""
    if not subject.is_loss:
        return None
    for case in cases(subject):
        n = case.x.shape[0]
        try:
            _, whole = subject.answer(case)
            alone = [subject.answer(_sample(case, i))[1] for i in range(n)]
        except UserCodeFailed as error:
            return failed("batch_mean", f"{error} ({case.describe()})")
        mean_loss = np.mean([float(a.out) for a in alone])
        dx = np.concatenate([np.asarray(a.grads["dx"]).reshape(1, -1) for a in alone]) / n
        tolerance = LOSS_TOLERANCE[case.dtype]
        if difference(whole.out, mean_loss).error > tolerance:
            times = float(whole.out) / mean_loss if mean_loss else 0.0
            return failed(
                "batch_mean",
                f"the loss of a batch of {n} is {number(float(whole.out))}, the mean of its "
                f"samples' losses {number(mean_loss)}"
                + (f" ({number(times)} times)" if times else "")
                + f": divide the summed loss by the batch size, once ({case.describe()})",
            )
        mine = np.asarray(whole.grads.get("dx"))
        if mine.shape != case.x.shape or difference(mine, dx.reshape(mine.shape)).error > tolerance:
            return failed(
                "batch_mean",
                f"dx of a batch of {n} is not each sample's gradient / {n}: divide dx by the "
                f"batch size (dx = (y - t) / batch_size) ({case.describe()})",
            )
    return passed("batch_mean", "loss and dx are the means over the batch")


def _sample(case: Case, i: int) -> Case:
    return Case(
        case.seed,
        case.dtype,
        case.x[i : i + 1],
        case.other[i : i + 1],
        case.arrays,
        case.options,
        None,
    )


def inference(subject: Subject) -> Result | None:
    """With train_flg=False a sample's output depends on that sample alone (running
    statistics, no random mask), and Dropout's equals its training output on average."""
    if subject.book.train_flag is None:
        return None
    for case in cases(subject, dtypes=(np.dtype(np.float64),)):
        try:
            obj = subject.make(case)
            for _ in range(3):
                subject.forward(obj, case, train=True)
            whole = subject.forward(obj, case, train=False)
            first = subject.forward(obj, case.with_x(case.x[:1]), train=False)
        except UserCodeFailed as error:
            return failed("inference", f"{error} ({case.describe()}, train_flg=False)")
        d = difference(np.asarray(whole)[:1], first)
        if d.error > 1e-9:
            return failed(
                "inference",
                f"with train_flg=False, sample 0's output is {number(d.other)} alone and "
                f"{number(d.yours)} in a batch of {case.x.shape[0]}: at inference use the "
                f"running mean and variance, not the batch's ({case.describe()})",
                d.error,
            )
        if subject.reference is not None and subject.reference.name == "dropout":
            problem = _dropout_expectation(subject, case, np.asarray(whole))
            if problem:
                return failed("inference", problem)
    return passed("inference", "at inference each sample's output depends on it alone")


def _dropout_expectation(subject: Subject, case: Case, inferred: np.ndarray) -> str:
    """Training outputs average to the inference output (within 6 standard errors)."""
    obj = subject.make(case)
    draws = []
    for seed in range(400):
        np.random.seed(seed)
        draws.append(
            subject.call("forward", subject.book.forward, obj, case.x.copy(), None, train=True)
        )
    draws = np.asarray(draws, dtype=np.float64)
    error = draws.std(axis=0) / np.sqrt(len(draws)) + 1e-12
    gap = np.abs(draws.mean(axis=0) - inferred) / error
    if gap.max() > 6:
        i = tuple(map(int, np.unravel_index(int(gap.argmax()), gap.shape)))
        return (
            f"training outputs average {number(draws.mean(axis=0)[i])} at {list(i)} but "
            f"inference gives {number(inferred[i])}: scale one of them (inverted dropout: "
            f"x * mask / (1 - ratio) in training, x at inference) ({case.describe()})"
        )
    return ""
