"""Adam's update and the weight average (EMA), each in one pass over a parameter."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .shared import CHUNKS, _span


@njit(parallel=True, cache=True)
def adam_step(param, grad, m, v, b1, b2, a1, a2, root, eps, rate):
    """One Adam step over flat arrays in one sweep (optimizers.Adam.step's ufuncs, fused):
    m = m*b1 + g*a1; v = v*b2 + (g*a2)*g; param -= (m*rate) / (sqrt(v)*root + eps).

    The scalars come in the arrays' dtype and every operation rounds as the ufunc it stands
    for (no fused multiply-adds without fastmath), so the result is the NumPy step's bits.
    """
    n = param.size
    for k in prange(CHUNKS):
        lo, hi = _span(k, n)
        p, g, mk, vk = param[lo:hi], grad[lo:hi], m[lo:hi], v[lo:hi]
        for u in range(hi - lo):
            gu = g[u]
            mu = mk[u] * b1 + gu * a1
            vu = vk[u] * b2 + (gu * a2) * gu
            mk[u] = mu
            vk[u] = vu
            p[u] = p[u] - (mu * rate) / (np.sqrt(vu) * root + eps)


@njit(parallel=True, cache=True)
def ema_step(average, weights, rate):
    """average += (weights - average) * rate over flat arrays, in one sweep; each operation
    rounds as WeightAverage.update's ufuncs do, so the bits are theirs."""
    n = average.size
    for k in prange(CHUNKS):
        lo, hi = _span(k, n)
        a, w = average[lo:hi], weights[lo:hi]
        for u in range(hi - lo):
            a[u] = a[u] + (w[u] - a[u]) * rate
