"""The command line: click commands only. Each parses, calls the module that does the work,
and hands records to the console, which alone writes to stdout and picks exit codes.

To add a subcommand: write its work as a function in its own module (taking an `emit` callback
for records), then a click command here that passes its options through `common_options`.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from .. import __version__, console
from ..custom import registration
from ..errors import ConfigError, ExitCode
from ..run import check, model, session
from ..run.inputs import DataOptions
from ..run.interrupts import INTERRUPTS
from ..run.session import Hooks, TrainRequest
from ..run.threads import blas_threads
from .options import (
    EXIT_CODES,
    board_of,
    common_options,
    config_argument,
    data_of,
    data_options,
    layers_option,
    preprocess_option,
    set_option,
    tensorboard_options,
    threads_option,
    weights_option,
    with_shortcuts,
)


class BptrainGroup(click.Group):
    """A click group whose commands run inside console.run: one `Error:` line, one exit code."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> NoReturn:
        extra.pop("standalone_mode", None)
        sys.exit(self._run(args, prog_name or "bptrain", extra))

    def _run(self, args: Any, prog_name: str, extra: dict[str, Any]) -> int:
        registration.reset()  # no --layers files carry over from a command run before
        with console.session(), INTERRUPTS.installed():
            return console.run(lambda: self._click(args, prog_name, extra))

    def _click(self, args: Any, prog_name: str, extra: dict[str, Any]) -> int:
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)  # type: ignore[return-value]
        except click.exceptions.NoArgsIsHelpError as error:
            console.stderr_text(error.format_message())  # bare `bptrain`: the help, on stderr
            return ExitCode.USAGE
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx else prog_name
            raise ConfigError(f"{error.format_message()} (see '{command} --help')") from None
        except click.Abort:
            raise KeyboardInterrupt from None


@click.group(
    cls=BptrainGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(__version__, "--version", prog_name="bptrain")
@common_options
def cli() -> None:
    """bptrain: train neural networks on MNIST with from-scratch backpropagation.

    Results go to stdout as JSON Lines; logs and progress go to stderr.
    Shell completion: eval "$(_BPTRAIN_COMPLETE=bash_source bptrain)" (zsh_source, fish_source).
    """


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="bptrain")


def _read_stdin() -> str:
    return sys.stdin.read()


# ---------------------------------------------------------------------------------------------
# train


@cli.command(name="train", epilog=EXIT_CODES)
@config_argument
@set_option
@click.option("--epochs", type=int, default=None, help="Shortcut for --set train.epochs=N.")
@click.option("--lr", type=float, default=None, help="Shortcut for --set optimizer.lr=X.")
@click.option("--batch-size", type=int, default=None, help="Shortcut for --set train.batch_size=N.")
@click.option("--seed", type=int, default=None, help="Shortcut for --set seed=N.")
@data_options
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Checkpoint path (default runs/<config>-<time>.npz; with --resume, that file).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Let a new run replace an existing --out file (a regular file: a folder, FIFO, device "
    "or symlink is never replaced).",
)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False),
    default=None,
    help="Continue a run from its checkpoint (its config and data folder; --set may change "
    "train.*).",
)
@layers_option
@click.option(
    "--init-from",
    type=click.Path(),
    default=None,
    metavar="FILE",
    help="Start a new run from these weights (the optimizer starts fresh): a bptrain "
    "checkpoint (the weights eval uses) or a safetensors state dict in PyTorch's "
    "nn.Sequential names, as bptrain export writes it. Checked against CONFIG layer by layer.",
)
@tensorboard_options
@click.option(
    "--print-config", is_flag=True, help="Print the merged, validated config as YAML and exit."
)
@click.option(
    "--dry-run", is_flag=True, help="A few batches of train, validation and test; nothing saved."
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 when the test accuracy ends below this fraction.",
)
@click.option(
    "--progress-every",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="When stderr is not a terminal (CI logs), a progress line this often; 0 for none.",
)
@threads_option
@common_options
# Long only in its signature: one parameter per click option above; the body passes them on.
def train_command(
    config: str | None,
    overrides: tuple[str, ...],
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
    out: str | None,
    overwrite: bool,
    resume: str | None,
    init_from: str | None,
    tensorboard: str | None,
    tensorboard_histograms: bool,
    print_config: bool,
    dry_run: bool,
    target_accuracy: float | None,
    progress_every: float,
    threads: int | None,
) -> None:
    """Train a model from CONFIG: a YAML file, '-' for stdin, or a preset name.

    Without CONFIG the default preset runs (mlp: the seed's two-layer network on MNIST).
    Prints one JSON record per epoch, then a summary; checkpoints after every epoch and on
    Ctrl-C, SIGTERM or SIGHUP. An existing --out is never replaced without --overwrite.
    """
    request = TrainRequest(
        config=config,
        overrides=with_shortcuts(overrides, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed),
        data=data_of(data_dir, mirrors, offline),
        out=out,
        overwrite=overwrite,
        resume=resume,
        target_accuracy=target_accuracy,
        dry_run=dry_run,
        init_from=init_from,
        tensorboard=board_of(tensorboard, tensorboard_histograms),
    )
    if print_config:
        console.write_stdout(session.print_config(request, _read_stdin))
        return
    hooks = Hooks(
        emit=console.emit,
        progress=lambda n: console.progress(n, every=progress_every),
        read_stdin=_read_stdin,
    )
    from ..scale import parallel

    if parallel.launched_size() > 1:  # under mpiexec / srun: data-parallel, one BLAS thread
        with blas_threads(threads or 1):  # per rank unless --threads says otherwise
            parallel.train(request, hooks)
        return
    with blas_threads(threads):
        session.train(request, hooks)


# ---------------------------------------------------------------------------------------------
# eval


@cli.command(name="eval", epilog=EXIT_CODES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.option(
    "--split",
    type=click.Choice(["test", "validation", "train"]),
    default="test",
    show_default=True,
    help="Which data to evaluate on.",
)
@weights_option
@data_options
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="Evaluate on your own labelled images instead: DIR/<class>/*.png, where <class> is a "
    "label (3) or a class name (Trouser), prepared as `predict` prepares them.",
)
@preprocess_option
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 when the accuracy is below this fraction.",
)
@layers_option
@threads_option
@common_options
def eval_command(
    checkpoint_path: str,
    split: str,
    weights: str,
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
    images: str | None,
    preprocess: str,
    target_accuracy: float | None,
    threads: int | None,
) -> None:
    """Evaluate a checkpoint; the model is rebuilt from the checkpoint alone.

    The data is looked for where the run trained unless --data-dir says otherwise; --images
    evaluates on a folder-per-class tree of your own images ("split": "images").
    """
    if images is not None:
        with blas_threads(threads):
            from ..predict import classify as predict

            predict.evaluate_images(
                checkpoint_path, images, preprocess=preprocess, weights=weights,
                target_accuracy=target_accuracy, emit=console.emit, on_error=console.error_line,
            )  # fmt: skip
        return
    with blas_threads(threads):
        model.evaluate_checkpoint(
            checkpoint_path,
            split=split,
            weights=weights,
            data=data_of(data_dir, mirrors, offline),
            target_accuracy=target_accuracy,
            emit=console.emit,
        )


# ---------------------------------------------------------------------------------------------
# gradcheck


@cli.command(epilog=EXIT_CODES)
@config_argument
@set_option
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-6,
    show_default=True,
    help="Largest relative error that passes.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Samples in the checked batch (BatchNorm needs a few).",
)
@click.option(
    "--coords",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Entries checked per parameter.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="For an `idx` dataset: the folder whose shape and classes the network is built for.",
)
@threads_option
@common_options
def gradcheck_command(
    config: str | None,
    overrides: tuple[str, ...],
    tolerance: float,
    batch_size: int,
    coords: int,
    data_dir: str | None,
    threads: int | None,
) -> None:
    """Check backprop against numerical gradients for CONFIG's network, in float64.

    Every parameter and the input gradient are compared with central differences on a small
    seeded batch; points where a step would cross a ReLU or max-pool kink are skipped.
    Exits 1 when any relative error is over --tolerance.
    """
    with blas_threads(threads):
        check.gradcheck_config(
            config,
            overrides,
            tolerance=tolerance,
            batch_size=batch_size,
            coords=coords,
            data=DataOptions(data_dir=data_dir),
            read_stdin=_read_stdin,
            emit=console.emit,
        )


# Commands with their own modules (this one keeps the commands of a run): your own images, the
# data and presets, the pictures and summaries, the draw-a-digit server, sweeps. Their engines
# load only when they run.
from .check import check_command  # noqa: E402
from .datasets import download_command, presets_command  # noqa: E402
from .export import export_command  # noqa: E402
from .plot import plot_command  # noqa: E402
from .predict import predict_command  # noqa: E402
from .serve import serve_command  # noqa: E402
from .sweep import sweep_command  # noqa: E402
from .visual import graph_command, summary_command  # noqa: E402

for command in (
    predict_command, download_command, presets_command, graph_command, summary_command,
    plot_command, serve_command, sweep_command, check_command, export_command,
):  # fmt: skip
    cli.add_command(command)
