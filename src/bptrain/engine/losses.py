"""Output layers that end the graph with a scalar loss: softmax + cross-entropy, identity + MSE."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..registry import Named, Registry

LOSSES = Registry("loss")


class Loss(Named):
    """forward(x, t) -> scalar loss (in x's dtype); backward(dout=1) -> dL/dx, shape of x."""

    example: ClassVar[dict[str, Any]] = {}

    def forward(self, x: np.ndarray, t: np.ndarray) -> np.floating:
        raise NotImplementedError

    def backward(self, dout: float = 1) -> np.ndarray:
        raise NotImplementedError


@LOSSES.register(
    "softmax_with_loss", aliases=("softmax", "cross_entropy", "categorical_crossentropy")
)
class SoftmaxWithLoss(Loss):
    """Softmax fused with cross-entropy; t is integer labels (N,) or one-hot/soft rows (N, C).

    Fusing lets the loss come from log-softmax (finite for any score) and the gradient be the
    seed's (y - t) / N without ever dividing by a probability.
    """

    example: ClassVar[dict[str, Any]] = {
        "spec": {"type": "softmax_with_loss", "label_smoothing": 0.1},
        "input_shape": (5,),
    }

    def __init__(self, label_smoothing: float = 0.0) -> None:
        # Label smoothing trains against (1 - e) * onehot + e / C: the network is never pushed
        # towards infinitely confident scores, which helps it generalize (Szegedy et al. 2016).
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"must be in [0, 1), got {label_smoothing}", path="label_smoothing")
        self.label_smoothing = float(label_smoothing)

    def forward(self, x: np.ndarray, t: np.ndarray) -> np.floating:
        n, classes = x.shape[0], x.shape[1]
        eps = self.label_smoothing
        shifted = x - x.max(axis=1, keepdims=True)  # (N, C); the max shift prevents overflow
        self.t = np.asarray(t)
        if self.t.ndim == 1:
            self.rows = np.arange(n)
            picked = shifted[self.rows, self.t].sum()  # read before exp overwrites `shifted`
        else:
            picked = np.vdot(self.t, shifted)
        # The smoothing's uniform part picks every score: sum over all of them, also before exp.
        spread = shifted.sum() if eps else 0.0
        # In place: this runs once per training step, and every pass over the scores counts.
        exp = np.exp(shifted, out=shifted)
        sums = exp.sum(axis=1)
        self.y = exp
        self.y /= sums[:, None]
        log_sums = np.log(sums)
        if self.t.ndim == 1:
            total = log_sums.sum()
        else:
            t_sum = self.t.sum(axis=1)  # 1 for one-hot rows; soft labels need not sum to 1
            total = np.dot((1 - eps) * t_sum + eps, log_sums)
        loss = (total - (1 - eps) * picked - eps / classes * spread) / n
        return x.dtype.type(loss)

    def backward(self, dout: float = 1) -> np.ndarray:
        n, classes = self.y.shape
        eps = self.label_smoothing
        if self.t.ndim == 1:
            dx = self.y.copy()
            dx[self.rows, self.t] -= 1 - eps
        else:
            dx = self.y - (1 - eps) * self.t.astype(self.y.dtype, copy=False)
        if eps:
            dx -= self.y.dtype.type(eps / classes)
        dx *= self.y.dtype.type(dout / n)
        return dx

    def __repr__(self) -> str:
        smoothing = f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"SoftmaxWithLoss({smoothing})"


@LOSSES.register("identity_with_mse", aliases=("mse", "mean_squared_error"))
class IdentityWithMSE(Loss):
    """The seed's identity output with mean-squared error: L = sum((y - t)^2) / (2N).

    Integer labels are one-hot encoded, so the pair also works as a classifier loss.
    """

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "identity_with_mse"}, "input_shape": (5,)}

    def forward(self, x: np.ndarray, t: np.ndarray) -> np.floating:
        t = np.asarray(t)
        if t.ndim == 1 and x.ndim == 2:
            onehot = np.zeros_like(x)
            onehot[np.arange(x.shape[0]), t] = 1
            t = onehot
        self.y = x
        self.t = t.astype(x.dtype, copy=False)
        diff = self.y - self.t
        return x.dtype.type(0.5 * np.vdot(diff, diff) / x.shape[0])

    def backward(self, dout: float = 1) -> np.ndarray:
        dx = self.y - self.t
        dx *= self.y.dtype.type(dout / self.y.shape[0])
        return dx
