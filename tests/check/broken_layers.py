"""Layers with one deliberate mistake each, for tests/check/test_broken.py.

EXPECTED maps each class to the reference it is checked against (--as) and the one check
that must catch it. Every class is otherwise correct, so no other check may fail.
"""

import numpy as np

EXPECTED = {
    "ReluInPlace": ("relu", "leaves_dout"),
    "ReluChangesX": ("relu", "leaves_x"),
    "ReluStaleMask": ("relu", "second_forward"),
    "SigmoidSignError": ("sigmoid", "backward"),
    "SigmoidOverflow": ("sigmoid", "large_inputs"),
    "AffineNoBias": ("affine", "forward"),
    "AffineTransposedDW": ("affine", "shapes"),
    "AffineDbWrongAxis": ("affine", "shapes"),
    "AffineFloat64": ("affine", "float32"),
    "AffineFlatOnly": ("affine", "tensor_input"),
    "LossOneHotOnly": ("softmax_with_loss", "label_forms"),
    "LossNoBatchDivide": ("softmax_with_loss", "batch_mean"),
    "LossClipped": ("softmax_with_loss", "large_inputs"),
    "BatchNormBatchStatsAtInference": ("batch_norm", "inference"),
    "DropoutUnscaled": ("dropout", "inference"),
}


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _log_softmax(x):
    x = x - np.max(x, axis=1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))


class ReluInPlace:
    def forward(self, x):
        self.mask = x <= 0
        return np.maximum(x, 0)

    def backward(self, dout):
        dout[self.mask] = 0  # the seed's mistake
        return dout


class ReluChangesX:
    def forward(self, x):
        self.mask = x <= 0
        x[self.mask] = 0  # writes into the caller's array
        return x

    def backward(self, dout):
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class ReluStaleMask:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        if self.mask is None:  # only the first forward sets the cache
            self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class SigmoidSignError:
    def forward(self, x):
        self.out = _sigmoid(x)
        return self.out

    def backward(self, dout):
        return dout * (self.out - 1.0) * self.out  # should be (1 - out)


class SigmoidOverflow:
    def forward(self, x):
        self.out = 1 / (1 + np.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class _Affine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, self.W.T).reshape(self.shape)


class AffineNoBias(_Affine):
    def forward(self, x):
        self.shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W)  # forgets + b; backward is still the right one


class AffineTransposedDW(_Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = np.dot(dout.T, self.x)
        return dx


class AffineDbWrongAxis(_Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = np.sum(dout, axis=1)
        return dx


class AffineFloat64(_Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = np.sum(dout, axis=0, dtype=np.float64)
        return dx


class AffineFlatOnly:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x  # the seed's first Affine: no reshape, so 4-D input breaks np.dot
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, self.W.T)


class _Loss:
    def forward(self, x, t):
        n = x.shape[0]
        self.t = t
        self.labels = t.argmax(axis=1) if t.ndim == 2 else t
        logp = _log_softmax(x)
        self.y = np.exp(logp)
        return -np.sum(logp[np.arange(n), self.labels]) / n

    def backward(self, dout=1):
        n = self.y.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.labels] -= 1
        return dx / n


class LossOneHotOnly(_Loss):
    def backward(self, dout=1):
        return (self.y - self.t) / self.t.shape[0]  # the seed's: one-hot t only


class LossNoBatchDivide(_Loss):
    def backward(self, dout=1):
        return super().backward(dout) * self.y.shape[0]  # forgets to divide by the batch


class LossClipped(_Loss):
    def forward(self, x, t):
        super().forward(x, t)
        n = x.shape[0]
        return -np.sum(np.log(self.y[np.arange(n), self.labels] + 1e-7)) / n


class BatchNormBatchStatsAtInference:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x, train_flg=True):
        mu = x.mean(axis=0)  # at inference too: the mistake
        xc = x - mu
        var = np.mean(xc**2, axis=0)
        std = np.sqrt(var + 1e-5)
        self.n, self.xc, self.std, self.xn = x.shape[0], xc, std, xc / std
        if train_flg:
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dvar = 0.5 * -np.sum(dxn * self.xc / (self.std * self.std), axis=0) / self.std
        dxc += (2.0 / self.n) * self.xc * dvar
        return dxc - np.sum(dxc, axis=0) / self.n


class DropoutUnscaled:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        return x  # forgets * (1 - ratio): inference no longer matches training on average

    def backward(self, dout):
        return dout * self.mask
