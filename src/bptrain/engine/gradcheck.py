"""Gradient checking: backprop's gradients against central differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layers import LAYERS, Layer
from .losses import LOSSES, Loss
from .network import Network

# The floor of |a| + |n|. Central differences of an O(1) loss in float64 carry an absolute error
# of ~1e-12 (more through BatchNorm's cancellations: a bias right before BatchNorm has a true
# gradient of 0 and a numerical one of 2-4e-12). Below 1e-4 the comparison is therefore absolute:
# |a - n| must stay under tolerance * 1e-4 (1e-10 at the default tolerance), which any real
# backward bug exceeds by orders of magnitude.
TINY = 1e-4


def relative_error(a: np.ndarray, n: np.ndarray, tiny: float = TINY) -> np.ndarray:
    """|a - n| / max(|a| + |n|, tiny), elementwise."""
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), tiny)


def central_difference(
    f: Callable[[], float], array: np.ndarray, index: tuple, eps: float
) -> float:
    """d f / d array[index] by a central difference (changes the entry and restores it)."""
    old = array[index]
    array[index] = old + eps
    plus = f()
    array[index] = old - eps
    minus = f()
    array[index] = old
    return (plus - minus) / (2 * eps)


class KinkWatch:
    """Notices when a nudged evaluation flips a kink: a ReLU mask or a max-pool choice.

    A central difference across a kink measures a slope that exists on neither side, so such
    steps are not comparable with backprop. Layers report their kink state (`kink_state()`);
    any difference from the unperturbed evaluation marks the step as crossing.
    """

    def __init__(self, network: Network) -> None:
        self.network = network
        self.base = self._state()
        self.crossed = False

    def _state(self) -> list[np.ndarray]:
        return [a.copy() for layer in self.network.layers for a in layer.kink_state()]

    def observe(self) -> None:
        """Call after each evaluation of the loss."""
        current = self._state()
        if any(not np.array_equal(a, b) for a, b in zip(current, self.base, strict=True)):
            self.crossed = True


def numerical_derivative(
    f: Callable[[], float],
    array: np.ndarray,
    index: tuple,
    eps: float = 1e-3,
    watch: KinkWatch | None = None,
) -> tuple[float, bool]:
    """Richardson-extrapolated central difference and whether f was smooth around the point.

    Two step sizes cancel the eps^2 error term. A step that flips a kink is retried ten times
    smaller (three times at most); the step is never chosen by how well it agrees with backprop.
    When the two step sizes still disagree far beyond the eps^2 term, f is not smooth there
    and the point is not used.
    """
    step = eps
    for _ in range(4):
        if watch is not None:
            watch.crossed = False
        wide = central_difference(f, array, index, step)
        narrow = central_difference(f, array, index, step / 2)
        if watch is None or not watch.crossed:
            smooth = abs(wide - narrow) <= 1e-4 * max(abs(wide) + abs(narrow), 1e-3)
            return (4 * narrow - wide) / 3, smooth
        step /= 10
    return float("nan"), False


@dataclass
class ParamCheck:
    """The result for one parameter (or the input)."""

    name: str
    shape: tuple[int, ...]
    max_relative_error: float
    worst_index: tuple[int, ...]
    checked: int
    skipped_kinks: int

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "max_relative_error": self.max_relative_error,
            "worst_index": list(self.worst_index),
            "checked": self.checked,
            "skipped_kinks": self.skipped_kinks,
        }


@dataclass
class GradcheckReport:
    """Per-parameter results of a check and whether all are within `tolerance`."""

    tolerance: float
    parameters: list[ParamCheck]

    @property
    def max_relative_error(self) -> float:
        return max((p.max_relative_error for p in self.parameters), default=0.0)

    @property
    def unchecked(self) -> list[str]:
        """Parameters where no point could be compared (every step flipped a kink)."""
        return [p.name for p in self.parameters if p.checked == 0]

    @property
    def ok(self) -> bool:
        """Every parameter was compared somewhere, and every error is within tolerance."""
        return not self.unchecked and self.max_relative_error <= self.tolerance

    @property
    def worst(self) -> ParamCheck | None:
        return max(self.parameters, key=lambda p: p.max_relative_error, default=None)

    def to_record(self) -> dict[str, Any]:
        return {
            "event": "gradcheck",
            "ok": self.ok,
            "tolerance": self.tolerance,
            "max_relative_error": self.max_relative_error,
            "parameters": [p.to_record() for p in self.parameters],
        }


def _check_array(
    name: str,
    array: np.ndarray,
    analytic: np.ndarray,
    f: Callable[[], float],
    coords: int,
    rng: np.random.Generator,
    eps: float,
    watch: KinkWatch | None = None,
) -> ParamCheck:
    """Compare `analytic` with numerical derivatives at up to `coords` smooth entries."""
    candidates = rng.permutation(array.size)[: 3 * coords]
    worst, worst_index, checked, skipped = 0.0, (0,) * array.ndim, 0, 0
    for flat in candidates:
        if checked == coords:
            break
        index = np.unravel_index(flat, array.shape)
        numeric, smooth = numerical_derivative(f, array, index, eps, watch)
        if not smooth:
            skipped += 1
            continue
        checked += 1
        error = float(relative_error(np.float64(analytic[index]), np.float64(numeric)))
        if error > worst or checked == 1:
            worst, worst_index = error, tuple(int(i) for i in index)
    return ParamCheck(name, array.shape, worst, worst_index, checked, skipped)


# Long: the check reads as one recipe (float64 copy, kinks nudged away, every parameter and
# the input, one record); its steps are the book's section 5.7.3 in order.
def check_network(
    network: Network,
    x: np.ndarray,
    t: np.ndarray,
    *,
    tolerance: float = 1e-6,
    coords: int = 30,
    eps: float = 1e-3,
    rng: np.random.Generator | None = None,
    include_input: bool = True,
) -> GradcheckReport:
    """Check every parameter (and the input) of a float64 network on one batch.

    The network runs in training mode (BatchNorm uses batch statistics); its generator is
    rewound before every evaluation so dropout draws the same mask each time. Steps that flip
    a ReLU or max-pool kink are shrunk (see numerical_derivative); points where even the
    smallest step flips one are skipped and counted in `skipped_kinks`.
    """
    if network.dtype != np.float64:
        raise ValueError("gradient checks need a float64 network (build it with dtype=np.float64)")
    rng = rng if rng is not None else np.random.default_rng(0)
    x = np.array(x, dtype=np.float64)
    rng_state = network.rng.bit_generator.state

    watch: KinkWatch | None = None

    def loss() -> float:
        network.rng.bit_generator.state = rng_state
        value = network.loss(x, t, train=True)
        if watch is not None:
            watch.observe()
        return value

    loss()
    watch = KinkWatch(network)  # the kink state of the unperturbed batch
    dx = network.backward(input_grad=True)
    grads = {name: g.copy() for name, g in network.grads.items()}
    results = [
        _check_array(name, network.params[name], grads[name], loss, coords, rng, eps, watch)
        for name in network.params
    ]
    if include_input and dx is not None:
        results.append(_check_array("input", x, dx, loss, coords, rng, eps, watch))
    return GradcheckReport(tolerance, results)


class _ProjectionLoss(Loss):
    """L = sum(out * R) for a fixed random R: every output entry gets a distinct gradient."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights

    def forward(self, x: np.ndarray, t: np.ndarray) -> np.floating:
        return x.dtype.type(np.vdot(x, self.weights))

    def backward(self, dout: float = 1) -> np.ndarray:
        return self.weights * dout


def check_layer(
    layer: Layer | Mapping[str, Any],
    input_shape: tuple[int, ...],
    *,
    batch: int = 4,
    seed: int = 0,
    tolerance: float = 1e-6,
    coords: int = 30,
) -> GradcheckReport:
    """Gradient-check one layer (an instance or a registry spec) on a random float64 batch."""
    rng = np.random.default_rng(seed)
    layer = LAYERS.build(layer) if isinstance(layer, Mapping) else layer
    probe = Network([layer], _ProjectionLoss(np.empty(0)), input_shape, rng=rng, dtype=np.float64)
    probe.loss_layer = _ProjectionLoss(rng.standard_normal((batch, *probe.output_shape)))
    x = rng.standard_normal((batch, *input_shape))
    return check_network(
        probe, x, np.zeros(batch, dtype=np.int64), tolerance=tolerance, coords=coords, rng=rng
    )


def check_loss(
    loss: Loss | Mapping[str, Any],
    classes: int,
    *,
    batch: int = 4,
    seed: int = 0,
    tolerance: float = 1e-6,
    coords: int = 30,
) -> GradcheckReport:
    """Gradient-check a loss layer's input gradient on random scores and labels."""
    rng = np.random.default_rng(seed)
    loss = LOSSES.build(loss) if isinstance(loss, Mapping) else loss
    probe = Network([], loss, (classes,), rng=rng, dtype=np.float64)
    x = rng.standard_normal((batch, classes)) * 3
    t = rng.integers(0, classes, size=batch)
    return check_network(probe, x, t, tolerance=tolerance, coords=coords, rng=rng)
