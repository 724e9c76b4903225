"""Where a training step's time goes: forward and backward of each layer of a preset.

    OPENBLAS_NUM_THREADS=1 python benchmarks/layer_profile.py [cnn-deep] [--batch 100]

Builds the preset's network, runs one training step on a batch of random float32 images to
fill every cache, then times each layer's forward (train=True) and backward on the very arrays
the step passes between layers, in the network's execution order (a ReLU before a max-pool
runs after it). Prints the minimum over --repeats runs of each, in milliseconds, and each
layer's share of the sum. Minimums, not medians: another process on the machine only ever adds
time, so the minimum is the least noisy estimate of a layer's own cost.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bptrain.config import load_config
from bptrain.engine.network import Network
from bptrain.run.parts import PARTS

WARMUP_SECONDS = 5.0


def best_ms(fn, repeats: int) -> float:
    """Minimum wall time of fn() over `repeats` runs, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def build(preset: str, seed: int = 0) -> Network:
    cfg = load_config(preset, parts=PARTS).config
    return Network.from_specs(
        list(cfg.model.layers), (1, 28, 28), rng=np.random.default_rng(seed), num_classes=10
    )


def profile(net: Network, batch: int, repeats: int) -> list[tuple[str, float, float]]:
    """(layer, forward ms, backward ms) per layer in execution order, plus the loss."""
    rng = np.random.default_rng(1)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, batch)
    # Warm-up: every buffer allocated once, BLAS threads started, and the core kept busy for
    # WARMUP_SECONDS, as it is mid-epoch: on some (virtual) machines the first seconds of
    # work run up to 1.7x slower, which would inflate the layers timed first.
    start = time.perf_counter()
    while time.perf_counter() - start < WARMUP_SECONDS:
        net.gradient(x, t)
    rows = []
    # Forward: each layer on the previous layer's real output. Layers that draw random numbers
    # (dropout) draw again on every repeat, which is what a training step pays too.
    inputs, a = [], x
    for i in net.order:
        layer = net.layers[i]
        inputs.append(a)
        fwd = best_ms(lambda layer=layer, a=a: layer.forward(a, train=True), repeats)
        a = layer.forward(a, train=True)  # leaves the layer's cache for this very input
        rows.append([f"{i:2d} {layer!r}", fwd, 0.0])
    loss_fwd = best_ms(lambda: net.loss_layer.forward(a, t), repeats)
    net.loss_layer.forward(a, t)
    g = net.loss_layer.backward(1)
    loss_bwd = best_ms(lambda: net.loss_layer.backward(1), repeats)
    # Backward in reverse, as Network.backward runs it (the first trained layer skips dx).
    for row, i in reversed(list(zip(rows, net.order, strict=True))):
        layer = net.layers[i]
        if g is None:  # layers before the first trained one get no backward in training
            continue
        row[2] = best_ms(lambda layer=layer, g=g: layer.backward(g), repeats)
        g = layer.backward(g)
    rows.append(["   loss", loss_fwd, loss_bwd])
    return [tuple(r) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="cnn-deep")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    net = build(args.preset)
    rows = profile(net, args.batch, args.repeats)
    total = sum(f + b for _, f, b in rows)
    print(f"{args.preset}, batch {args.batch}, min of {args.repeats} (ms)")
    print(f"{'layer':<64} {'forward':>8} {'backward':>8} {'share':>6}")
    for name, f, b in rows:
        print(f"{name:<64} {f:8.2f} {b:8.2f} {100 * (f + b) / total:5.1f}%")
    print(f"{'total':<64} {sum(r[1] for r in rows):8.2f} {sum(r[2] for r in rows):8.2f}")
    # The full step as training runs it, for comparison with the per-layer sum.
    rng = np.random.default_rng(2)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, args.batch)
    step = best_ms(lambda: net.gradient(x, t), args.repeats)
    print(f"{'whole step (net.gradient)':<64} {step:8.2f}")


if __name__ == "__main__":
    main()
