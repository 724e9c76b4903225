"""Run under `mpiexec -n K python tests/mpi_fit.py SPEC.json`: data-parallel fit() in float64
on every rank, then (rank 0) the same fit in one process; prints the largest weight difference.

The spec: {"layers": [...], "epochs", "batch_size", "sync_batch_norm"}.
"""

import json
import sys

import numpy as np
from mpi4py import MPI

from bptrain.engine.network import Network
from bptrain.engine.optimizers import OPTIMIZERS
from bptrain.engine.train import FitHooks, FitOptions, fit
from bptrain.scale.parallel import Parallel


def run(spec: dict, parallel: Parallel | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.random((240, 1, 8, 8))
    t = rng.integers(0, 4, 240)
    net = Network.from_specs(spec["layers"], (1, 8, 8), rng=rng, dtype=np.float64, num_classes=4)
    hooks = FitHooks()
    if parallel is not None:
        hooks = parallel.setup(net, 7, spec["sync_batch_norm"], hooks)
    optimizer = OPTIMIZERS.build({"type": "momentum", "lr": 0.05})
    options = FitOptions(epochs=spec["epochs"], batch_size=spec["batch_size"])
    fit(net, optimizer, (x, t), options, rng=rng, hooks=hooks)
    return {k: v.copy() for k, v in net.arrays.items()}


with open(sys.argv[1]) as file:
    spec = json.load(file)
world = Parallel(MPI.COMM_WORLD, MPI)
world.started = True
spread = run(spec, world)
if world.is_root:
    alone = run(spec, None)
    print(json.dumps({k: float(np.abs(spread[k] - alone[k]).max()) for k in alone}))
