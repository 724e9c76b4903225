"""Options that several bptrain commands share (the commands themselves are in cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import console
from ..config import preset_names
from ..errors import ConfigError
from ..run.inputs import DataOptions
from ..run.tensorboard import BoardOptions

# The exit-code table every command's --help ends with.
EXIT_CODES = console.exit_codes_help()


def _flag(name: str, *decls: str, help: str) -> Callable:
    def set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            console.configure(**{name: True})

    return click.option(
        *decls, name, is_flag=True, expose_value=False, callback=set_flag, help=help
    )


QUIET = _flag("quiet", "-q", "--quiet", help="No logs or progress on stderr (errors still show).")
VERBOSE = _flag("verbose", "-v", "--verbose", help="More detail on stderr; tracebacks on errors.")
TRACEBACK = _flag("traceback", "--traceback", help="Show the Python traceback of an error.")


def common_options(command: Callable) -> Callable:
    """-q, -v and --traceback work after the subcommand's name too."""
    return QUIET(VERBOSE(TRACEBACK(command)))


weights_option = click.option(
    "--weights",
    type=click.Choice(["auto", "last", "best", "ema"]),
    default="auto",
    show_default=True,
    help="last, best-validation or averaged (train.ema) weights; auto = the ones the "
    "training summary used.",
)


def _give_layers(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    from ..custom import registration

    registration.give(value)


layers_option = click.option(
    "--layers",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE.py",
    expose_value=False,
    callback=_give_layers,
    help="A file of your own layers the checkpoint was trained with (repeatable). A checkpoint "
    "never makes bptrain import code: a file it names is imported only from here, and only if "
    "its SHA-256 is the one recorded at training.",
)


def _complete_config(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    from click.shell_completion import CompletionItem

    presets = [CompletionItem(name) for name in preset_names() if name.startswith(incomplete)]
    return [*presets, CompletionItem(incomplete, type="file")]


config_argument = click.argument(
    "config", required=False, metavar="[CONFIG]", shell_complete=_complete_config
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (YAML value), e.g. train.epochs=3 or 'model.layers[1].units=200'.",
)
preprocess_option = click.option(
    "--preprocess",
    type=click.Choice(["auto", "digits", "fashion", "none"]),
    default="auto",
    show_default=True,
    help="How images are prepared: auto = the convention of the checkpoint's dataset (digits: "
    "MNIST's 20x20 box centred by mass; fashion: fitted and centred); none: already the "
    "network's size.",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="BLAS threads (default: what the environment sets, else every core; one for serve, "
    "each sweep worker and each MPI rank).",
)


def data_options(command: Callable) -> Callable:
    """--data-dir, --mirror, --offline."""
    command = click.option(
        "--offline", is_flag=True, help="Never use the network (also BPTRAIN_OFFLINE=1)."
    )(command)
    command = click.option(
        "--mirror",
        "mirrors",
        multiple=True,
        metavar="URL",
        help="Extra download mirror, tried first (repeatable; also BPTRAIN_MIRROR).",
    )(command)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="The dataset's folder when it holds the files, else a cache root (files go to "
        "DIR/<dataset>/). Default: BPTRAIN_DATA_DIR, then ~/.cache/bptrain.",
    )(command)


def data_of(data_dir: str | None, mirrors: tuple[str, ...], offline: bool) -> DataOptions:
    return DataOptions(data_dir=data_dir, mirrors=tuple(mirrors), offline=offline or None)


# Shortcuts for the --set paths users of PyTorch's example and Keras reach for first.
SHORTCUTS = {
    "epochs": "train.epochs",
    "lr": "optimizer.lr",
    "batch_size": "train.batch_size",
    "seed": "seed",
}


def with_shortcuts(overrides: tuple[str, ...], **values: Any) -> tuple[str, ...]:
    extra = [f"{SHORTCUTS[k]}={v}" for k, v in values.items() if v is not None]
    return (*overrides, *extra)


def tensorboard_options(command: Callable) -> Callable:
    """--tensorboard DIR, --tensorboard-histograms (train and sweep)."""
    command = click.option(
        "--tensorboard-histograms",
        is_flag=True,
        help="With --tensorboard: also the distributions of every weight and of its gradient "
        "(the epoch's last step) per epoch.",
    )(command)
    return click.option(
        "--tensorboard",
        type=click.Path(file_okay=False),
        default=None,
        metavar="DIR",
        help="Write each epoch's loss, accuracy, learning rate and seconds to DIR as TensorBoard "
        "scalars (step = epoch); view with: tensorboard --logdir DIR. Needs bptrain[tensorboard].",
    )(command)


def board_of(folder: str | None, histograms: bool) -> BoardOptions | None:
    if folder is None:
        if histograms:
            raise ConfigError("--tensorboard-histograms needs --tensorboard DIR")
        return None
    return BoardOptions(folder, histograms)
