"""Output layers that end the graph with a scalar loss: softmax + cross-entropy, identity + MSE."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .registry import Named, Registry

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

    example: ClassVar[dict[str, Any]] = {"spec": {"type": "softmax_with_loss"}, "input_shape": (5,)}

    def forward(self, x: np.ndarray, t: np.ndarray) -> np.floating:
        n = x.shape[0]
        shifted = x - x.max(axis=1, keepdims=True)  # (N, C); the max shift prevents overflow
        self.t = np.asarray(t)
        if self.t.ndim == 1:
            self.rows = np.arange(n)
            picked = shifted[self.rows, self.t].sum()  # read before exp overwrites `shifted`
        else:
            picked = np.vdot(self.t, shifted)
        # In place: this runs once per training step, and every pass over the scores counts.
        exp = np.exp(shifted, out=shifted)
        sums = exp.sum(axis=1)
        self.y = exp
        self.y /= sums[:, None]
        log_sums = np.log(sums)
        if self.t.ndim == 1:
            loss = (log_sums.sum() - picked) / n
        else:
            t_sum = self.t.sum(axis=1)  # 1 for one-hot rows; soft labels need not sum to 1
            loss = (np.dot(t_sum, log_sums) - picked) / n
        return x.dtype.type(loss)

    def backward(self, dout: float = 1) -> np.ndarray:
        n = self.y.shape[0]
        if self.t.ndim == 1:
            dx = self.y.copy()
            dx[self.rows, self.t] -= 1
        else:
            dx = self.y - self.t.astype(self.y.dtype, copy=False)
        dx *= self.y.dtype.type(dout / n)
        return dx


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
