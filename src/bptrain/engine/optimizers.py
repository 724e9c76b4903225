"""Optimizers: update parameter arrays in place (the seed's step 3) and save their state.

Options every optimizer takes:

- `weight_decay`: L2 decay, ``grad + weight_decay * W``, for weights only. A parameter is a
  weight when the part of its name after the last dot is ``W`` (``"1.W"``, a conv's ``"0.W"``);
  biases (``b``) and BatchNorm's ``gamma``/``beta`` are never decayed. AdamW decouples it
  instead: ``W *= 1 - lr * weight_decay`` before its Adam step.
- `clip_norm`: when the global L2 norm over all gradients exceeds it, every gradient is scaled
  by ``clip_norm / norm`` before the update. The network's gradient arrays are scaled in place
  (they are recomputed by the next backward pass, so nothing else sees them).

All arithmetic stays in the parameter's dtype: scalars go through ``param.dtype.type``, state
arrays are created like the parameter, so float32 training keeps float32 state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np

from .. import accel
from ..errors import ConfigError
from ..registry import Registry

OPTIMIZERS = Registry("optimizer")

# Updates run block by block: a block of a parameter, its gradient, its state and two scratch
# arrays (6 x 256 KiB in float32) stay in a core's L2 cache across the dozen ufuncs of an Adam
# step, so a large weight matrix is read from memory about once per step instead of once per
# ufunc, and no temporary is allocated (Adam over the cnn preset's 432,000-weight affine:
# 1.3 ms -> 0.7 ms a step).
BLOCK = 1 << 16

Array = np.ndarray
Scratch = tuple[np.ndarray, np.ndarray]  # two work arrays shaped like the block


def decays(name: str) -> bool:
    """Whether weight decay applies to the parameter called `name` (weights, not biases)."""
    return name.rsplit(".", 1)[-1] == "W"


def _positive(value: float, path: str) -> float:
    """`value` if it is > 0, else a ConfigError naming `path`."""
    if not value > 0:
        raise ConfigError(f"must be > 0, got {value}", path=path)
    return float(value)


def _in_range(value: float, path: str, low: float, high: float) -> float:
    """`value` if low <= value < high, else a ConfigError naming `path`."""
    if not low <= value < high:
        raise ConfigError(f"must be in [{low:g}, {high:g}), got {value}", path=path)
    return float(value)


class Optimizer:
    """Base: `update(params, grads)` changes every array of `params` in place.

    `lr` is the learning rate in use; a schedule sets it each step from `base_lr`.
    Per-parameter state (velocities, moments) lives in `state` as ``{"<param>.<slot>": array}``
    so a checkpoint can store and restore it exactly. A subclass names its slots in `slots`
    and implements `step`, which updates one block in place.
    """

    # AdamW applies its weight decay itself, to the weights rather than the gradient.
    decoupled_weight_decay = False
    # Names of the per-parameter state arrays `step` receives, in this order.
    slots: tuple[str, ...] = ()

    def __init__(
        self, lr: float = 0.01, weight_decay: float = 0.0, clip_norm: float | None = None
    ) -> None:
        if not 0 < lr < math.inf:
            raise ConfigError(f"must be a finite number > 0, got {lr}", path="lr")
        if not weight_decay >= 0:
            raise ConfigError(f"must be >= 0, got {weight_decay}", path="weight_decay")
        if clip_norm is not None and not clip_norm > 0:
            raise ConfigError(
                f"must be > 0 (or null for no clipping), got {clip_norm}", path="clip_norm"
            )
        self.base_lr = float(lr)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0
        self._work: dict[np.dtype, np.ndarray] = {}  # scratch for `step`; not state

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Apply one step to every parameter (after clipping, with weight decay)."""
        self.steps += 1
        if self.clip_norm is not None:
            clip_global_norm(grads, self.clip_norm)
        for name, param in params.items():
            grad = grads[name]
            if self.weight_decay and decays(name) and not self.decoupled_weight_decay:
                grad = grad + param.dtype.type(self.weight_decay) * param  # new: grads untouched
            self.update_one(name, param, grad)

    def update_one(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """Run `step` over the parameter, its gradient and its state, block by block."""
        state = [self.slot(name, slot, param) for slot in self.slots]
        for block in _blocks(param, grad, *state):
            self.step(block[0], block[1], block[2:], self._scratch(block[0]))

    def step(self, param: Array, grad: Array, state: list[Array], scratch: Scratch) -> None:
        """Update one block of `param` (and its `state`) in place; `scratch` is free to use."""
        raise NotImplementedError

    def _scratch(self, like: Array) -> Scratch:
        """Two work arrays shaped like `like`: views of one reused buffer when a block fits."""
        if like.ndim != 1 or like.size > BLOCK:
            return np.empty_like(like), np.empty_like(like)
        work = self._work.get(like.dtype)
        if work is None:
            work = self._work[like.dtype] = np.empty((2, BLOCK), dtype=like.dtype)
        return work[0, : like.size], work[1, : like.size]

    def slot(self, name: str, slot: str, like: np.ndarray) -> np.ndarray:
        """Per-parameter state array, created as zeros on first use."""
        key = f"{name}.{slot}"
        if key not in self.state:
            self.state[key] = np.zeros_like(like)
        return self.state[key]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that restore this optimizer exactly (steps included); copies, not live state."""
        return {
            "steps": np.array(self.steps, dtype=np.int64),
            **{k: v.copy() for k, v in self.state.items()},
        }

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `state_dict` returned."""
        self.steps = int(state["steps"])
        self.state = {k: np.array(v) for k, v in state.items() if k != "steps"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g})"


def clip_global_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale all `grads` in place so their joint L2 norm is at most `max_norm`; return the norm."""
    # Python floats accumulate in double precision; a float32 sum of squares could overflow.
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm:
        for g in grads.values():
            g *= g.dtype.type(max_norm / norm)
    return norm


def _blocks(*arrays: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Matching 1-D blocks of at most BLOCK elements of same-shaped arrays (views, so in-place
    updates reach the arrays); the arrays whole when one is not C-contiguous, since flattening
    it would copy.
    """
    if not all(a.flags.c_contiguous for a in arrays):
        yield list(arrays)
        return
    flat = [a.reshape(-1) for a in arrays]
    for start in range(0, flat[0].size, BLOCK):
        yield [f[start : start + BLOCK] for f in flat]


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    momentum 0: ``W -= lr * g``. Otherwise the book's velocity ``v = momentum * v - lr * g``
    and ``W += v``; Nesterov looks ahead: ``W += momentum * v - lr * g`` (with the new v).
    """

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = _in_range(momentum, "momentum", 0, 1)
        if nesterov and self.momentum == 0:
            raise ConfigError("Nesterov momentum needs momentum > 0", path="nesterov")
        self.nesterov = bool(nesterov)
        self.slots = ("v",) if self.momentum else ()
        self._lr_grads: dict[str, np.ndarray] = {}

    def update_one(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """Plain SGD is two ufuncs per parameter: blocking buys nothing and costs Python time."""
        if self.momentum:
            super().update_one(name, param, grad)
            return
        lr_grad = self._lr_grads.get(name)
        if lr_grad is None or lr_grad.shape != grad.shape or lr_grad.dtype != param.dtype:
            lr_grad = self._lr_grads[name] = np.empty_like(param)
        np.multiply(grad, param.dtype.type(self.lr), out=lr_grad)
        param -= lr_grad

    def step(self, param: Array, grad: Array, state: list[Array], scratch: Scratch) -> None:
        f = param.dtype.type
        lr_grad, ahead = scratch
        np.multiply(grad, f(self.lr), out=lr_grad)
        if self.momentum == 0:
            param -= lr_grad
            return
        (v,) = state
        v *= f(self.momentum)
        v -= lr_grad
        if self.nesterov:
            np.multiply(v, f(self.momentum), out=ahead)
            ahead -= lr_grad
            param += ahead
        else:
            param += v


@OPTIMIZERS.register("momentum")
class Momentum(SGD):
    """SGD with momentum 0.9 by default (the book's Momentum)."""

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, momentum, False, weight_decay, clip_norm)


@OPTIMIZERS.register("nesterov")
class Nesterov(SGD):
    """SGD with Nesterov momentum, 0.9 by default."""

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, momentum, True, weight_decay, clip_norm)


@OPTIMIZERS.register("adagrad")
class AdaGrad(Optimizer):
    """Per-coordinate rates from summed squared gradients: h += g^2; W -= lr g / (sqrt(h) + eps)."""

    slots = ("h",)

    def __init__(
        self,
        lr: float = 0.01,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.eps = _positive(eps, "eps")

    def step(self, param: Array, grad: Array, state: list[Array], scratch: Scratch) -> None:
        (h,), work = state, scratch[0]
        np.multiply(grad, grad, out=work)
        h += work
        _step_scaled(param, grad, h, self.lr, self.eps, scratch)


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """AdaGrad with a forgetting sum: h = rho h + (1 - rho) g^2; W -= lr g / (sqrt(h) + eps)."""

    slots = ("h",)

    def __init__(
        self,
        lr: float = 0.01,
        rho: float = 0.99,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.rho = _in_range(rho, "rho", 0, 1)
        self.eps = _positive(eps, "eps")

    def step(self, param: Array, grad: Array, state: list[Array], scratch: Scratch) -> None:
        (h,), work = state, scratch[0]
        rho = param.dtype.type(self.rho)
        h *= rho
        np.multiply(grad, 1 - rho, out=work)  # (1 - rho) * g * g, in that order
        work *= grad
        h += work
        _step_scaled(param, grad, h, self.lr, self.eps, scratch)


def _step_scaled(
    param: Array, grad: Array, h: Array, lr: float, eps: float, scratch: Scratch
) -> None:
    """W -= lr * g / (sqrt(h) + eps), in the parameter's dtype, in the scratch arrays."""
    f = param.dtype.type
    denom, change = scratch
    np.sqrt(h, out=denom)
    denom += f(eps)
    np.multiply(grad, f(lr), out=change)
    change /= denom
    param -= change


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, Algorithm 1), t = the step count:

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    W -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """

    slots = ("m", "v")

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = _in_range(beta1, "beta1", 0, 1)
        self.beta2 = _in_range(beta2, "beta2", 0, 1)
        self.eps = _positive(eps, "eps")

    def update_one(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """With the compiled loops: the whole parameter in one fused sweep (the same bits as
        the blocked ufuncs of `step`, a third of the memory traffic, split over the threads).
        """
        fast = accel.loops()
        m, v = (self.slot(name, slot, param) for slot in self.slots)
        arrays = (param, grad, m, v)
        if fast is None or not all(a.flags.c_contiguous for a in arrays):
            super().update_one(name, param, grad)
            return
        f = param.dtype.type
        b1, b2 = f(self.beta1), f(self.beta2)
        root, rate = self._corrections(f)
        flat = [a.reshape(-1) for a in arrays]
        fast.adam_step(*flat, b1, b2, 1 - b1, 1 - b2, root, f(self.eps), rate)

    def _corrections(self, f: type) -> tuple[np.floating, np.floating]:
        """The bias corrections as two scalars: 1 / sqrt(1 - b2^t) and lr / (1 - b1^t)."""
        c1, c2 = 1 - self.beta1**self.steps, 1 - self.beta2**self.steps
        return f(1 / math.sqrt(c2)), f(self.lr / c1)

    def step(self, param: Array, grad: Array, state: list[Array], scratch: Scratch) -> None:
        f = param.dtype.type
        b1, b2 = f(self.beta1), f(self.beta2)
        (m, v), (work, change) = state, scratch
        m *= b1
        np.multiply(grad, 1 - b1, out=work)
        m += work
        v *= b2
        np.multiply(grad, 1 - b2, out=work)  # (1 - b2) * g * g, in that order
        work *= grad
        v += work
        # Bias corrections folded into scalars: sqrt(v / c2) = sqrt(v) / sqrt(c2).
        root, rate = self._corrections(f)
        denom = np.sqrt(v, out=work)
        denom *= root
        denom += f(self.eps)
        np.multiply(m, rate, out=change)
        change /= denom
        param -= change


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): W *= 1 - lr * weight_decay, then
    the Adam step on the raw gradient. Weights only, as for every optimizer; default 0.01.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm)

    def update_one(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        if self.weight_decay and decays(name):
            param *= param.dtype.type(1 - self.lr * self.weight_decay)
        super().update_one(name, param, grad)
