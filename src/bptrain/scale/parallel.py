"""Data-parallel training on MPI: `mpiexec -n K bptrain train CONFIG`.

Every rank holds the whole model and walks the same global batches in the same order (one
generator, one seed, as a single process would). Each rank backpropagates its slice of every
batch, scaled by its share of the batch, so the gradients summed by one Allreduce over a flat
buffer are exactly the gradient of the whole batch's mean loss; every rank then applies the
same update and the weights stay identical. Without BatchNorm or dropout, K ranks give the
weights of one process up to floating-point summation order.

- BatchNorm normalises with each rank's own batch statistics (as PyTorch's DDP does);
  `train.sync_batch_norm: true` sums them over the ranks instead, so the statistics are the
  whole batch's. Running statistics are averaged over the ranks after each epoch.
- Dropout draws its masks from a generator per rank (seeded from the run's seed and the rank).
- Rank 0 alone reads or downloads the data first (the others wait, then read the verified
  files offline), prints the records, shows progress and writes the checkpoints.
- A stop (Ctrl-C, SIGTERM, a closed stdout on rank 0) travels with the gradients, so every rank
  stops after the same step and rank 0 checkpoints it. Errors every rank meets alike (a bad
  config, divergence, which all ranks see in the summed loss) end every rank with the same
  exit code and one `Error:` line from rank 0; an error on one rank alone aborts the job with
  its exit code (MPI_Abort), so no rank is left waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..engine.layers import BatchNorm
from ..engine.train import FitHooks
from ..errors import BptrainError, CheckFailed, ConfigError, DivergedError, Interrupted

# Set by the MPI launchers: MPICH and Intel MPI (also under Slurm's srun --mpi=pmi2), Open MPI,
# MVAPICH. A single process has none of them (or 1).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# The same launchers' names for this process's rank.
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
# Errors that every rank raises at the same point, from the same (summed or shared) numbers.
COLLECTIVE = (DivergedError, Interrupted, CheckFailed)


def launched_size() -> int:
    """How many processes the MPI launcher started (1 when not under mpiexec or srun)."""
    sizes = [os.environ.get(name, "") for name in SIZE_VARIABLES]
    return max([int(s) for s in sizes if s.isdigit()] or [1])


def launched_rank() -> int:
    """This process's rank as the MPI launcher numbered it (0 when it says none)."""
    ranks = [os.environ.get(name, "") for name in RANK_VARIABLES]
    return max([int(r) for r in ranks if r.isdigit()] or [0])


class RankStopped(BptrainError):
    """This rank ends like rank 0, which reports the reason (so nothing is printed here)."""

    already_reported = True

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Parallel:
    """The MPI world of one run: gradient sums, the shared stop decision, rank 0's duties."""

    def __init__(self, comm: Any, mpi: Any) -> None:
        self.comm, self.mpi = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.stopping = False  # the collective decision, from the last step's sum
        self.local_stop: Callable[[], bool] = lambda: False
        self.comm_seconds = 0.0  # time in Allreduce (waiting for the slowest rank included)
        self.started = False  # past the start-up broadcast: failures are no longer shared
        self._buffer: np.ndarray | None = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- start-up ---------------------------------------------------------------------------

    def share_start(
        self, folder: str | None = None, seed: int | None = None
    ) -> tuple[str | None, int | None]:
        """Rank 0's verified data folder and seed to every rank (rank 0 passes them; the
        others wait here until it has them, or get its failure)."""
        found = self.comm.bcast(("ok", folder, seed) if self.is_root else None, root=0)
        self.started = True
        if found[0] != "ok":
            code, message = found[1], found[2]
            raise RankStopped(f"rank 0 failed before training: {message}", code)
        return found[1], found[2]

    def share_failure(self, error: BaseException) -> None:
        """Rank 0 failed before the data was shared: the others end with its exit code."""
        code = getattr(error, "exit_code", 70)
        self.comm.bcast(("failed", int(code), str(error)), root=0)
        self.started = True

    def setup(self, network: Any, seed: int, sync_batch_norm: bool, hooks: FitHooks) -> FitHooks:
        """Per-rank dropout masks; BatchNorm statistics summed over the ranks when asked; and
        `hooks` for fit() with this world's gradient step, buffer averaging and stop test."""
        from ..engine.layers import Dropout

        self.comm.Barrier()  # the ranks start together: epoch 1's time is training, not loading
        self.comm_seconds = 0.0
        for layer in network.layers:
            if isinstance(layer, Dropout) and self.size > 1:
                layer.rng = np.random.default_rng([seed, self.rank])
            if isinstance(layer, BatchNorm) and sync_batch_norm:
                # The layer becomes a SyncBatchNorm in place: the network, its fused runs and
                # the optimizer keep the very same object and arrays.
                layer.__class__ = SyncBatchNorm
                layer.world = self
        return replace(
            hooks,
            gradient=self.gradient,
            epoch_end=self.average_buffers,  # one model on every rank for validation
            stop_requested=self.watch(hooks.stop_requested or (lambda: False)),
        )

    # -- every step -------------------------------------------------------------------------

    def shard(self, n: int) -> slice:
        """This rank's rows of a batch of n: contiguous, sizes differing by at most one."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def gradient(self, network: Any, xb: np.ndarray, tb: np.ndarray) -> tuple[float, int]:
        """The whole batch's mean loss and hits; the whole batch's gradient in every rank."""
        from ..functional import labels_of

        n, rows = xb.shape[0], self.shard(xb.shape[0])
        x, t = xb[rows], tb[rows]
        m = x.shape[0]
        if m:
            scores = network.predict(x, train=True)
            loss = float(network.loss_layer.forward(scores, t)) * m
            network.backward(dout=m / n)  # this slice's share of the batch mean
            correct = int(np.count_nonzero(scores.argmax(axis=1) == labels_of(t)))
        else:  # a batch smaller than the world: this rank adds nothing
            for g in network.grads.values():
                g[...] = 0
            loss, correct = 0.0, 0
        self._sum_gradients(network.grads)
        totals = self.sum(np.array([loss, correct, float(self.local_stop())]))
        self.stopping = bool(totals[2] > 0)
        return float(totals[0]) / n, round(float(totals[1]))

    def _sum_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Allreduce over every gradient, packed into one flat buffer of their dtype."""
        arrays = [g.reshape(-1) for g in grads.values()]  # views: the gradients are contiguous
        total = sum(a.size for a in arrays)
        if self._buffer is None or self._buffer.size != total:
            self._buffer = np.empty(total, dtype=arrays[0].dtype if arrays else np.float32)
        if not arrays:
            return
        np.concatenate(arrays, out=self._buffer)
        started = time.perf_counter()
        self.comm.Allreduce(self.mpi.IN_PLACE, self._buffer, op=self.mpi.SUM)
        self.comm_seconds += time.perf_counter() - started
        offset = 0
        for a in arrays:
            a[...] = self._buffer[offset : offset + a.size]
            offset += a.size

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The element-wise sum of `values` over the ranks (a new array)."""
        out = np.ascontiguousarray(values).copy()
        started = time.perf_counter()
        self.comm.Allreduce(self.mpi.IN_PLACE, out, op=self.mpi.SUM)
        self.comm_seconds += time.perf_counter() - started
        return out

    def average_buffers(self, network: Any) -> None:
        """BatchNorm's running statistics: the ranks' mean, so every rank holds one model."""
        for value in network.buffers.values():
            value[...] = self.sum(value) / value.dtype.type(self.size)

    def take_comm_seconds(self) -> float:
        """Seconds spent in Allreduce since the last call (an epoch's, for its record)."""
        seconds, self.comm_seconds = self.comm_seconds, 0.0
        return seconds

    def watch(self, local: Callable[[], bool]) -> Callable[[], bool]:
        """The training loop's stop test: the ranks' shared decision, fed by `local`."""
        self.local_stop = local
        return lambda: self.stopping

    # -- the end ----------------------------------------------------------------------------

    def finish(self, error: BaseException) -> BaseException:
        """What this rank raises for `error`, or an abort of the whole job (never a hang)."""
        if not self.started:  # rank 0 failed before the data was shared (the others wait)
            self.share_failure(error)
            return error
        if isinstance(error, RankStopped):
            return error
        if isinstance(error, COLLECTIVE):  # every rank raised it: rank 0 alone reports it
            code = int(getattr(error, "exit_code", 1))
            return error if self.is_root else RankStopped(str(error), code)
        # This rank alone failed mid-run: the others would wait for it in Allreduce forever.
        from .. import console

        shown = error if isinstance(error, BptrainError) else f"rank {self.rank}: {error!r}"
        console.error_line(shown)
        self.comm.Abort(int(getattr(error, "exit_code", 70)))
        return error  # not reached: Abort ends every process of the job


class SyncBatchNorm(BatchNorm):
    """BatchNorm whose batch means (the statistics, and the two its input gradient takes) are
    the whole batch's: every rank's sums added (train.sync_batch_norm). It runs the book's
    NumPy body (engine/layers/norm.py). The parameter gradients stay this rank's share; the
    gradient step adds them up with the others."""

    world: Parallel  # set by Parallel.setup

    def batch_mean(self, a: np.ndarray) -> np.ndarray:
        """The per-channel mean over every rank's rows: one sum of the sums and the counts."""
        total = self.world.sum(np.append(a.sum(axis=0), a.shape[0]).astype(a.dtype))
        return total[:-1] / total[-1]


def train(request: Any, hooks: Any) -> dict[str, Any]:
    """`bptrain train` on every rank of the MPI job (see the module's docstring)."""
    from .. import console
    from ..run import session

    try:
        par = world()
    except BptrainError as error:  # every rank meets it (no mpi4py): rank 0 alone says so
        if launched_rank() == 0:
            raise
        raise RankStopped(str(error), int(error.exit_code)) from None
    if not par.is_root:
        console.configure(quiet=True)
        hooks = replace(hooks, emit=lambda record: None, progress=lambda n: None)
    try:
        if par.is_root and request.config == "-":
            raise ConfigError(
                "under mpiexec the config cannot come from stdin (only rank 0 reads it)",
                hint="give a config file or a preset name",
            )
        summary = session.train(request, hooks, parallel=par)
    except BaseException as error:
        raise par.finish(error) from None
    return summary


def world() -> Parallel:
    """The MPI world, or a clear error when mpi4py is missing under an MPI launcher."""
    from .. import extras

    extras.require("mpi4py", "mpi", "training under mpiexec")
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_size() < 2 and launched_size() > 1:
        raise ConfigError(
            f"the launcher started {launched_size()} processes but MPI sees one: mpi4py is "
            "built for another MPI than the mpiexec that started it",
            hint="use the mpiexec of the MPI mpi4py was built with (pip install 'bptrain[mpi]' "
            "brings both: .venv/bin/mpiexec)",
        )
    return Parallel(MPI.COMM_WORLD, MPI)
