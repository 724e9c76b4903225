# The seed's layers with their flaws fixed: `bptrain check examples/seed_layers_fixed.py`
# passes every check. Each fix says what `bptrain check examples/seed_layers.py` found.
import numpy as np


def softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)  # overflow guard, per row
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def log_softmax(x):
    # Fixed: log(softmax(x) + 1e-7) caps a sample's loss at 16.1 once softmax underflows to
    # 0 (large inputs); log-softmax is exact for any score.
    x = x - np.max(x, axis=-1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


class MulLayer:
    def __init__(self):
        self.x = None
        self.y = None

    def forward(self, x, y):
        self.x = x
        self.y = y
        out = x * y

        return out

    def backward(self, dout):
        dx = dout * self.y
        dy = dout * self.x

        return dx, dy


class AddLayer:
    def __init__(self):
        pass

    def forward(self, x, y):
        out = x + y

        return out

    def backward(self, dout):
        dx = dout * 1
        dy = dout * 1

        return dx, dy


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0

        return out

    def backward(self, dout):
        # Fixed: `dout[self.mask] = 0` wrote into the caller's gradient.
        dx = dout.copy()
        dx[self.mask] = 0

        return dx


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        # Fixed: 1 / (1 + np.exp(-x)) overflows for large negative x. exp only ever sees
        # -|x| here: x >= 0 gives 1 / (1 + e^-x), x < 0 gives e^x / (1 + e^x).
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1, e) / (1 + e)
        self.out = out

        return out

    def backward(self, dout):
        dx = dout * (1.0 - self.out) * self.out

        return dx


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b

        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x

        out = np.dot(self.x, self.W) + self.b

        return out

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)

        dx = dx.reshape(*self.original_x_shape)
        return dx


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        batch_size = x.shape[0]
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        self.loss = -np.sum(log_softmax(x)[np.arange(batch_size), labels]) / batch_size

        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        # Fixed: (y - t) assumed one-hot labels; labels as indices subtract 1 at each label.
        if self.t.size == self.y.size:
            dx = (self.y - self.t) / batch_size
        else:
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size

        return dx
