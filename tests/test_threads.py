"""Elementwise work over threads: every piece once, errors surfaced, and the same bits on any
thread count for the layers and the optimizer that spread their tiles (a race between threads
sharing scratch memory would show as differing bits only when the threads happen to overlap,
so the last test catches missing, doubled or reordered pieces for sure and races often)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bptrain import threads
from bptrain.network import Network
from bptrain.optimizers import OPTIMIZERS


@pytest.fixture
def workers():
    """Set the thread count for one test; back to the environment's afterwards."""
    yield threads.set_workers
    threads.set_workers(None)


def test_spread_runs_every_item_once_on_separate_threads(workers):
    workers(3)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(3, timeout=10)  # passes only if three shares run at once

    def task(share):
        barrier.wait()
        with lock:
            seen.extend((item, threading.get_ident()) for item in share)

    threads.spread(task, list(range(10)))
    assert sorted(item for item, _ in seen) == list(range(10))
    assert len({ident for _, ident in seen}) == 3
    caller = threading.get_ident()
    assert {item for item, ident in seen if ident == caller} == {0, 3, 6, 9}  # share 0


def test_one_thread_runs_in_the_caller_in_order(workers):
    workers(1)
    calls = []
    threads.spread(lambda share: calls.append((list(share), threading.get_ident())), [1, 2, 3])
    assert calls == [([1, 2, 3], threading.get_ident())]


def test_a_failing_share_raises_after_all_have_finished(workers):
    workers(2)
    finished = []

    def task(share):
        if 1 in share:
            raise ValueError("share with item 1")
        finished.extend(share)

    with pytest.raises(ValueError, match="item 1"):
        threads.spread(task, [0, 1, 2, 3])
    assert finished == [0, 2]


def test_spread_inside_a_task_runs_inline(workers):
    workers(2)
    inner_threads = []

    def inner(share):
        inner_threads.append(threading.get_ident())

    def outer(share):
        threads.spread(inner, [0, 1, 2])
        return share

    threads.spread(outer, [0, 1])
    assert len(inner_threads) == 2  # once per outer share, each on its own thread, not fanned out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OPENBLAS_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, 3),
        ({"OMP_NUM_THREADS": "5"}, 5),
        ({"MKL_NUM_THREADS": "4"}, 4),
        ({"OPENBLAS_NUM_THREADS": "junk", "OMP_NUM_THREADS": "2"}, 2),
    ],
)
def test_thread_count_follows_blas_environment(monkeypatch, env, expected):
    for name in threads.BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert threads.workers_from_environment() == expected


def test_unset_environment_means_every_available_core(monkeypatch):
    for name in threads.BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    import os

    assert threads.workers_from_environment() == len(os.sched_getaffinity(0))


def test_set_workers_rejects_zero():
    with pytest.raises(ValueError, match=">= 1"):
        threads.set_workers(0)


CONV_BN_POOL = [
    {"type": "conv2d", "filters": 6, "kernel": 3, "padding": "same"},
    {"type": "batch_norm"},
    {"type": "relu"},
    {"type": "max_pool2d", "size": 2},
    {"type": "conv2d", "filters": 8, "kernel": 3},  # its input gradient: col2im over channels
    {"type": "relu"},
    {"type": "flatten"},
    {"type": "affine", "units": 20},
    {"type": "batch_norm"},
    {"type": "relu"},
    {"type": "affine", "units": 10},
]


def _train(steps: int) -> dict[str, np.ndarray]:
    """A few Adam steps of a conv/BatchNorm/max-pool net; its weights and optimizer state."""
    rng = np.random.default_rng(3)
    net = Network.from_specs(CONV_BN_POOL, (1, 24, 24), rng=rng, num_classes=10)
    opt = OPTIMIZERS.build({"type": "adam", "lr": 0.01})
    data = np.random.default_rng(4)
    for _ in range(steps):
        x = data.standard_normal((64, 1, 24, 24), dtype=np.float32)
        t = data.integers(0, 10, 64)
        net.gradient(x, t)
        opt.update(net.params, net.grads)
    return {**net.arrays, **{f"opt.{k}": v for k, v in opt.state_dict().items()}}


def test_training_is_bit_identical_on_one_and_several_threads(monkeypatch, workers):
    # Tiny tiles and blocks, so every pass is split into many pieces across the threads.
    monkeypatch.setattr("bptrain.layers.pool.TILE_BYTES", 8192)
    monkeypatch.setattr("bptrain.layers.norm.TILE_BYTES", 8192)
    monkeypatch.setattr("bptrain.optimizers.BLOCK", 7)
    monkeypatch.setattr("bptrain.im2col.BLOCK_BYTES", 4096)
    workers(1)
    one = _train(3)
    workers(4)
    four = _train(3)
    assert one.keys() == four.keys()
    for key in one:
        np.testing.assert_array_equal(four[key], one[key], err_msg=key)
