"""`bptrain sweep`: hyperparameter search on Optuna (the work is in scale/sweep/)."""

from __future__ import annotations

import sys

import click

from .. import console
from .options import (
    board_of,
    common_options,
    data_of,
    data_options,
    tensorboard_options,
    threads_option,
)


@click.command(name="sweep", epilog=console.exit_codes_help())
@click.argument("spec", metavar="SPEC")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Folder of the trials' checkpoints (DIR/trial-NNNN.npz), DIR/best.yaml and, without "
    "--storage, the study's journal DIR/journal.log. Default runs/sweep-<study>/.",
)
@click.option(
    "--storage",
    default=None,
    metavar="FILE|URL",
    help="Where the study lives: a journal file (on NFS for many machines), or a database URL "
    "(sqlite:///study.db, postgresql://user@host/db, mysql+pymysql://...). Default "
    "DIR/journal.log.",
)
@click.option(
    "--study",
    default=None,
    help="The study's name (default: the spec file's name). The same --storage and --study "
    "on several machines make them share one study.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes on this machine, each training one trial at a time.",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help="Replace the spec's trials: (say, to extend a finished study).",
)
@tensorboard_options
@data_options
@threads_option
@common_options
def sweep_command(
    spec: str,
    out: str | None,
    storage: str | None,
    study: str | None,
    workers: int,
    trials: int | None,
    tensorboard: str | None,
    tensorboard_histograms: bool,
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
    threads: int | None,
) -> None:
    """Search hyperparameters with Optuna, as SPEC says: a YAML file, or '-' for stdin.

    Every trial is a normal training run with its own checkpoint; its epochs feed the
    pruner. Prints one JSON record per finished trial, then a summary of the whole study;
    DIR/best.yaml always holds the best trial's config (bptrain train DIR/best.yaml retrains
    it). Running the command again continues the study. For sweeps, --threads is the BLAS
    threads of each worker (default 1). Ctrl-C stops the running trials at their next step
    (recorded as failed) and exits 130. With --tensorboard DIR, each trial's epochs go to
    DIR/trial-NNNN/, so TensorBoard shows the trials side by side.
    """
    from ..scale.sweep import main as sweep

    request = sweep.SweepRequest(
        spec=spec, out=out, storage=storage, study=study, workers=workers, trials=trials,
        threads=threads, data=data_of(data_dir, mirrors, offline),
        verbose=console.OPTIONS.verbose,
        tensorboard=board_of(tensorboard, tensorboard_histograms),
    )  # fmt: skip
    sweep.sweep(
        request,
        emit=console.emit,
        read_stdin=lambda: sys.stdin.read(),
        progress=console.trial_progress,
    )
