"""BatchNorm's passes: per-channel sums and moments, scale and shift, and the input gradient."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .shared import CHUNKS, _column_totals, _keep_partial, _span, _zeros


@njit(parallel=True, cache=True)
def channel_sums(x):
    """(M, C) -> (C,) float64 column sums."""
    m, c = x.shape
    part = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)  # local: LLVM keeps it apart from x and vectorizes
        for i in range(lo, hi):
            for j in range(c):
                acc[j] += x[i, j]
        _keep_partial(part, k, acc)
    return _column_totals(part)


@njit(parallel=True, cache=True)
def centered_squares(x, mean):
    """(M, C), (C,) -> (C,) float64 sums of (x - mean)^2 per column."""
    m, c = x.shape
    part = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        acc = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - mean[j]
                acc[j] += d * d
        _keep_partial(part, k, acc)
    return _column_totals(part)


@njit(parallel=True, cache=True)
def shifted_moments(x, shift):
    """(M, C) x, float64 (C,) shift -> float64 (sum(x - shift), sum((x - shift)^2)) per
    column, in one pass over x (channel_sums and centered_squares read it twice).

    With the shift near the column means (BatchNorm passes its running mean), the variance
    sum2 / M - (sum1 / M)^2 loses nothing to cancellation: the terms are centred already,
    and float64 holds the rest (a mean 10^4 standard deviations off still keeps ~8 digits).
    """
    m, c = x.shape
    part1 = _zeros(CHUNKS, c)
    part2 = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        a1 = np.zeros(c, np.float64)
        a2 = np.zeros(c, np.float64)
        sh = shift.copy()  # local: LLVM keeps it apart from x and vectorizes
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - sh[j]
                a1[j] += d
                a2[j] += d * d
        _keep_partial(part1, k, a1)
        _keep_partial(part2, k, a2)
    return _column_totals(part1), _column_totals(part2)


@njit(parallel=True, cache=True)
def scale_shift(x, mean, scale, shift, out):
    """out = (x - mean) * scale + shift, per column of (M, C) x."""
    m, c = x.shape
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        for i in range(lo, hi):
            for j in range(c):
                out[i, j] = (x[i, j] - mean[j]) * scale[j] + shift[j]


@njit(parallel=True, cache=True)
def gradient_sums(x, mean, d):
    """(M, C) x and dout -> float64 (sum(d), sum(d * (x - mean))) per column, in one pass."""
    m, c = x.shape
    part_sum = _zeros(CHUNKS, c)
    part_dot = _zeros(CHUNKS, c)
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        s = np.zeros(c, np.float64)
        p = np.zeros(c, np.float64)
        for i in range(lo, hi):
            for j in range(c):
                s[j] += d[i, j]
                p[j] += d[i, j] * (x[i, j] - mean[j])
        _keep_partial(part_sum, k, s)
        _keep_partial(part_dot, k, p)
    return _column_totals(part_sum), _column_totals(part_dot)


@njit(parallel=True, cache=True)
def batch_norm_dx(x, mean, d, q, p, scale, dx):
    """dx = ((x - mean) * q + d + p) * scale, per column of (M, C) arrays."""
    m, c = x.shape
    for k in prange(CHUNKS):
        lo, hi = _span(k, m)
        for i in range(lo, hi):
            for j in range(c):
                dx[i, j] = ((x[i, j] - mean[j]) * q[j] + d[i, j] + p[j]) * scale[j]
