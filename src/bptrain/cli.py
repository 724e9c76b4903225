"""The command line: the only module that writes to stdout or picks exit codes.

stdout carries JSON Lines results and nothing else; logs, progress bars and errors go to stderr.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
import traceback as traceback_module
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import numpy as np

from . import __version__, checkpoint, experiment, gradcheck
from .config import DEFAULT_PRESET, LoadedConfig, load_config, preset_names
from .errors import BptrainError, CheckFailed, ConfigError, Interrupted
from .network import Network
from .train import EvalResult, TrainState, evaluate, fit

EXIT_CODES = """\b
Exit codes:
  0    ok
  1    check failed (gradcheck over tolerance, accuracy target missed)
  2    usage or config error
  3    data error (missing, corrupt or unreachable data)
  4    checkpoint error
  5    training diverged (non-finite loss or gradient)
  130  interrupted (Ctrl-C; train writes a checkpoint first)
  70   internal error (a bug in bptrain; --traceback shows where)
  141  stdout closed early (e.g. | head), as for any Unix tool
"""

STDOUT_CLOSED = 141
INTERNAL_ERROR = 70  # EX_SOFTWARE from sysexits.h


@dataclass
class Options:
    """Group options every command sees."""

    quiet: bool = False
    verbose: bool = False
    traceback: bool = False


OPTIONS = Options()


# ---------------------------------------------------------------------------------------------
# Output


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head -n 1`)."""


def emit(record: dict[str, Any]) -> None:
    """Write one JSON Lines record to stdout (never NaN/Infinity) and flush it."""
    line = json.dumps(_finite(record), allow_nan=False)
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise StdoutClosed from None


def _silence_stdout() -> None:
    # Point fd 1 at /dev/null so Python's final flush at exit cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _finite(value: Any) -> Any:
    """NaN or infinity would break JSON readers: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def log(message: str) -> None:
    """A human log line on stderr (silenced by --quiet)."""
    if not OPTIONS.quiet:
        click.echo(message, err=True)


def debug(message: str) -> None:
    """A detail only -v shows."""
    if OPTIONS.verbose and not OPTIONS.quiet:
        click.echo(message, err=True)


def error_line(error: BaseException) -> str:
    return "Error: " + str(error).replace("\n", "\nError: ")


# ---------------------------------------------------------------------------------------------
# The group


class BptrainGroup(click.Group):
    """A click group that turns every failure into one `Error:` line and a documented exit code."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        sys.exit(self._run(args, prog_name or "bptrain", extra))

    def _run(self, args: Any, prog_name: str, extra: dict[str, Any]) -> int:
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
            return code if isinstance(code, int) else 0
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.format_message(), err=True)  # bare `bptrain`: the help, on stderr
            return 2
        except click.UsageError as error:
            command = f"{error.ctx.command_path} " if error.ctx else f"{prog_name} "
            click.echo(
                f"Error: {error.format_message()} (see '{command.strip()} --help')", err=True
            )
            return 2
        except (KeyboardInterrupt, click.Abort):
            click.echo("Error: interrupted", err=True)
            return 130
        except StdoutClosed:
            return STDOUT_CLOSED
        except BptrainError as error:
            if OPTIONS.traceback or OPTIONS.verbose:
                traceback_module.print_exc(file=sys.stderr)
            click.echo(error_line(error), err=True)
            return error.exit_code
        except MemoryError:
            if OPTIONS.traceback or OPTIONS.verbose:
                traceback_module.print_exc(file=sys.stderr)
            click.echo(
                "Error: out of memory (a layer or batch too large for this machine?; "
                "try smaller units, filters or batch_size)",
                err=True,
            )
            return 2
        except Exception as error:  # a bug: still one line, and the way to learn more
            if OPTIONS.traceback or OPTIONS.verbose:
                traceback_module.print_exc(file=sys.stderr)
            click.echo(
                f"Error: internal error: {type(error).__name__}: {error} (this is a bug "
                "in bptrain; rerun with --traceback and report it)",
                err=True,
            )
            return INTERNAL_ERROR


@click.group(
    cls=BptrainGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(__version__, "--version", prog_name="bptrain")
@click.option("-q", "--quiet", is_flag=True, help="No logs or progress bars on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="More detail on stderr; tracebacks on errors.")
@click.option("--traceback", is_flag=True, help="Show the Python traceback of an error.")
def cli(quiet: bool, verbose: bool, traceback: bool) -> None:
    """bptrain: train neural networks on MNIST with from-scratch backpropagation.

    Results go to stdout as JSON Lines; logs and progress go to stderr.
    """
    OPTIONS.quiet, OPTIONS.verbose, OPTIONS.traceback = quiet, verbose, traceback
    _setup_logging()


def _setup_logging() -> None:
    """Library warnings (a mirror that failed, a system copy ignored) as plain stderr lines."""
    logger = logging.getLogger("bptrain")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    level = logging.DEBUG if OPTIONS.verbose else logging.WARNING
    logger.setLevel(logging.CRITICAL + 1 if OPTIONS.quiet else level)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="bptrain")


config_argument = click.argument("config", required=False, metavar="[CONFIG]")
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key (YAML value), e.g. train.epochs=3 or 'model.layers[1].units=200'.",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The dataset's folder when it already holds the four files, else a cache root "
    "(files go to DIR/<dataset>/). Default: BPTRAIN_DATA_DIR, then ~/.cache/bptrain.",
)
mirror_option = click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL",
    help="Extra download mirror, tried first (repeatable; also BPTRAIN_MIRROR).",
)
offline_option = click.option(
    "--offline", is_flag=True, help="Never use the network (also BPTRAIN_OFFLINE=1)."
)


def _read_stdin() -> str:
    return sys.stdin.read()


def _load(config: str | None, overrides: tuple[str, ...]) -> LoadedConfig:
    return load_config(config, overrides, stdin_text=_read_stdin)


# ---------------------------------------------------------------------------------------------
# train


class StopFlag:
    """Set by the first Ctrl-C or a closed stdout; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> bool:
        return self.reason is not None

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason

    @contextmanager
    def on_sigint(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            if self.reason == "interrupted":
                raise KeyboardInterrupt
            self.set("interrupted")
            click.echo("\nstopping at the end of this step (Ctrl-C again to abort)", err=True)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class Progress:
    """A tqdm bar per epoch on stderr: batches, loss and samples per second."""

    def __init__(self, epochs: int) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.epochs = epochs
        self.bar: Any = None
        self.epoch = -1

    def __call__(self, state: TrainState, steps: int, loss: float) -> None:
        if self.epoch != state.epoch:
            self.close()
            self.epoch, self.started, self.seen0 = state.epoch, time.perf_counter(), state.seen
            self.bar = self.tqdm(
                total=steps,
                initial=state.step - 1,
                unit="batch",
                leave=False,
                desc=f"epoch {state.epoch + 1}/{self.epochs}",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.update(1)
        if state.step % 20 == 0:
            rate = (state.seen - self.seen0) / max(time.perf_counter() - self.started, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} samples/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress_wanted() -> bool:
    return not OPTIONS.quiet and sys.stderr.isatty()


def _default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.npz"


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    val = ""
    if record["val_accuracy"] is not None:
        val = f"  val_loss {record['val_loss']:.4f}  val_acc {record['val_accuracy']:.2%}"
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  "
        f"acc {record['train_accuracy']:.2%}{val}  {record['seconds']:.1f}s  "
        f"{record['samples_per_second'] or 0:,.0f} samples/s"
    )


@cli.command(epilog=EXIT_CODES)
@config_argument
@set_option
@data_dir_option
@mirror_option
@offline_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Checkpoint path (default runs/<config>-<time>.npz; with --resume, that file).",
)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False),
    default=None,
    help="Continue a run from its checkpoint (its config; --set may change train.*).",
)
@click.option(
    "--print-config", is_flag=True, help="Print the merged, validated config as YAML and exit."
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 when the test accuracy ends below this fraction.",
)
def train(
    config: str | None,
    overrides: tuple[str, ...],
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
    out: str | None,
    resume: str | None,
    print_config: bool,
    target_accuracy: float | None,
) -> None:
    """Train a model from CONFIG: a YAML file, '-' for stdin, or a preset name.

    Without CONFIG the default preset runs (mlp: the seed's two-layer network on MNIST).
    Prints one JSON record per epoch, then a summary; checkpoints after every epoch.
    """
    ckpt = None
    if resume is not None:
        if config is not None:
            raise click.UsageError(
                "give either CONFIG or --resume (a resumed run uses the "
                "config stored in its checkpoint; change it with --set)"
            )
        ckpt = checkpoint.load(resume)
        _check_resume_overrides(overrides, ckpt)
        loaded = load_config(resume, overrides, raw=ckpt.meta.get("config", {}))
        seed = int(ckpt.meta["seed"])
    else:
        loaded = _load(config, overrides)
        seed = loaded.config.seed if loaded.config.seed is not None else experiment.draw_seed()
    cfg = loaded.config
    if print_config:
        text = (
            cfg.to_yaml()
            if cfg.seed is not None
            else cfg.to_yaml().replace("seed: null", f"seed: {seed}", 1)
        )
        click.echo(text, nl=False)
        return
    if cfg.seed is None:
        log(f"no seed in the config; drew seed {seed} (recorded in the checkpoint and summary)")
    out_path = Path(out) if out else (Path(resume) if resume else _default_out(loaded.name))
    checkpoint.check_writable(out_path)  # before minutes of loading and training, not after
    dataset = experiment.load_dataset(
        cfg, data_dir=data_dir, mirrors=mirrors, offline=offline or None, quiet=OPTIONS.quiet
    )
    try:
        run = experiment.prepare(cfg, seed, dataset)
    except ConfigError as error:
        raise loaded.locate(error) from None
    if ckpt is not None:
        experiment.resume(ckpt, run)
        log(f"resuming {resume} at epoch {run.state.epoch + 1}, step {run.state.step + 1}")
    debug(repr(run.network))
    log(
        f"training {loaded.name} on {dataset.name}: {len(run.train_rows)} train, "
        f"{run.val[0].shape[0]} validation, {run.test[0].shape[0]} test samples; "
        f"checkpoint {out_path}"
    )
    _train(run, out_path, target_accuracy)


# What a resumed run may change: how long and how it is trained and evaluated, and where the
# data is. The model, optimizer, seed and data split are fixed by the checkpoint.
RESUMABLE = ("train.", "data.dir", "data.mirrors")


def _check_resume_overrides(overrides: tuple[str, ...], ckpt: checkpoint.Checkpoint) -> None:
    for text in overrides:
        key = text.partition("=")[0].strip()
        if not key.startswith(RESUMABLE):
            raise ConfigError(
                f"--set {key}: a resumed run cannot change this (only train.*, data.dir, "
                "data.mirrors)",
                hint="start a new run with the changed config instead",
            )
        mid_epoch = ckpt.meta.get("train_state", {}).get("step", 0) > 0
        if key == "train.batch_size" and mid_epoch:
            raise ConfigError(
                "--set train.batch_size: the checkpoint stopped mid-epoch, in batches of the "
                "old size",
                hint="resume with the same batch size",
            )


def _train(run: experiment.Run, out_path: Path, target_accuracy: float | None) -> None:
    cfg = run.config
    stop = StopFlag()
    progress = Progress(cfg.train.epochs) if _progress_wanted() else None

    def on_epoch(state: TrainState, record: dict[str, Any]) -> None:
        if progress is not None:
            progress.close()
        checkpoint.save(
            out_path,
            run.network,
            run.optimizer,
            state,
            run.rng,
            run.meta(metrics=record, complete=False),
        )
        log(_epoch_line(record, cfg.train.epochs))
        try:
            emit({"event": "epoch", **record})
        except StdoutClosed:
            stop.set("stdout closed")

    with stop.on_sigint():
        state = fit(
            run.network,
            run.optimizer,
            run.all_train,
            rows=run.train_rows,
            epochs=cfg.train.epochs,
            batch_size=cfg.train.batch_size,
            rng=run.rng,
            val=run.val,
            schedule=run.schedule,
            state=run.state,
            early_stopping=cfg.train.early_stopping,
            on_batch=progress,
            on_epoch=on_epoch,
            stop_requested=stop,
        )
    if progress is not None:
        progress.close()
    if state.interrupted or stop():
        checkpoint.save(
            out_path,
            run.network,
            run.optimizer,
            state,
            run.rng,
            run.meta(metrics=state.history[-1] if state.history else {}, complete=False),
        )
        if stop.reason == "stdout closed":
            raise StdoutClosed
        raise Interrupted(
            f"interrupted at epoch {state.epoch + 1}, step {state.step}; checkpoint saved to "
            f"{out_path}",
            hint=f"continue with: bptrain train --resume {out_path}",
        )
    if state.stopped_early:
        log(
            f"early stopping after epoch {state.epoch}: no validation gain for "
            f"{cfg.train.early_stopping} epochs (best: epoch {state.best_epoch})"
        )
    _finish(run, state, out_path, target_accuracy)


def _finish(
    run: experiment.Run, state: TrainState, out_path: Path, target_accuracy: float | None
) -> None:
    """Test the final (or best-validation) weights, save the final checkpoint, print the summary."""
    cfg = run.config
    use_best = cfg.train.restore_best and state.best_params is not None
    last = {k: v.copy() for k, v in run.network.arrays.items()}
    if use_best:
        run.network.assign(state.best_params)  # type: ignore[arg-type]
    result = evaluate(run.network, *run.test, run.dataset.num_classes, cfg.train.eval_batch_size)
    run.network.assign(last)  # the checkpoint keeps the last weights, for --resume
    summary = {
        "event": "summary",
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "best_val_accuracy": state.best_val_accuracy,
        "epochs": state.epoch,
        "seconds": sum(r["seconds"] for r in state.history),
        "seed": run.seed,
        "checkpoint": str(out_path),
    }
    checkpoint.save(
        out_path,
        run.network,
        run.optimizer,
        state,
        run.rng,
        run.meta(metrics=summary, weights="best" if use_best else "last", complete=True),
    )
    log(f"test accuracy {result.accuracy:.2%} (loss {result.loss:.4f}); checkpoint {out_path}")
    emit(summary)
    _check_target(result.accuracy, target_accuracy, "test")


def _check_target(accuracy: float, target: float | None, split: str) -> None:
    if target is not None and accuracy < target:
        raise CheckFailed(f"{split} accuracy {accuracy:.4f} is below the target {target:.4f}")


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
@click.option(
    "--weights",
    type=click.Choice(["auto", "last", "best"]),
    default="auto",
    show_default=True,
    help="last or best-validation weights; auto = the ones the training summary used.",
)
@data_dir_option
@mirror_option
@offline_option
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 when the accuracy is below this fraction.",
)
def eval_command(
    checkpoint_path: str,
    split: str,
    weights: str,
    data_dir: str | None,
    mirrors: tuple[str, ...],
    offline: bool,
    target_accuracy: float | None,
) -> None:
    """Evaluate a checkpoint; the model is rebuilt from the checkpoint alone."""
    ckpt = checkpoint.load(checkpoint_path)
    try:
        loaded = load_config(checkpoint_path, raw=ckpt.meta["config"])
        seed = int(ckpt.meta["seed"])
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise checkpoint.CheckpointError(
            f"checkpoint {checkpoint_path}: its stored config is unusable ({error})"
        ) from None
    stored_folder = ckpt.meta.get("data", {}).get("folder")
    if data_dir is None and loaded.config.data.dir is None and stored_folder:
        # Where training read its data; load() still verifies every file there.
        data_dir = stored_folder if Path(stored_folder).is_dir() else None
    dataset = experiment.load_dataset(
        loaded.config,
        data_dir=data_dir,
        mirrors=mirrors,
        offline=offline or None,
        quiet=OPTIONS.quiet,
    )
    run = experiment.prepare(loaded.config, seed, dataset)
    stored = ckpt.meta.get("data", {}).get("checksums", {})
    if stored and stored != dict(dataset.checksums):
        log(f"warning: {checkpoint_path} was trained on other {dataset.name} files than these")
    chosen = ckpt.meta.get("weights", "last") if weights == "auto" else weights
    checkpoint.restore_network(run.network, ckpt, chosen)
    x, t = {"test": run.test, "validation": run.val, "train": run.train}[split]
    if x.shape[0] == 0:
        raise ConfigError(
            f"the {split} split is empty (data.validation is 0)", hint="evaluate another --split"
        )
    result: EvalResult = evaluate(
        run.network, x, t, dataset.num_classes, loaded.config.train.eval_batch_size
    )
    emit(
        {
            "event": "eval",
            "split": split,
            "n": result.n,
            "loss": result.loss,
            "accuracy": result.accuracy,
            "per_class_accuracy": result.per_class_accuracy,
            "confusion_matrix": result.confusion.tolist(),
            "checkpoint": checkpoint_path,
            "weights": chosen,
        }
    )
    _check_target(result.accuracy, target_accuracy, split)


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
def gradcheck_command(
    config: str | None, overrides: tuple[str, ...], tolerance: float, batch_size: int, coords: int
) -> None:
    """Check backprop against numerical gradients for CONFIG's network, in float64.

    Every parameter and the input gradient are compared with central differences on a small
    seeded batch; points where a step would cross a ReLU or max-pool kink are skipped.
    Exits 1 when any relative error is over --tolerance.
    """
    loaded = _load(config, overrides)
    cfg = loaded.config
    input_shape, classes = _data_shape(cfg, loaded)
    rng = np.random.default_rng(cfg.seed if cfg.seed is not None else 0)
    try:
        network = Network.from_specs(
            cfg.model.layers,
            input_shape,
            cfg.model.loss,
            rng=rng,
            dtype=np.float64,
            num_classes=classes,
        )
    except ConfigError as error:
        raise loaded.locate(error) from None
    if batch_size < 2 and any(type(layer).__name__ == "BatchNorm" for layer in network.layers):
        raise ConfigError(
            "--batch-size 1 with batch_norm: a batch of one normalizes to zero and every "
            "gradient before it vanishes",
            hint="use --batch-size 2 or more (default 4)",
        )
    x = rng.random((batch_size, *input_shape))
    t = rng.integers(0, classes, batch_size)
    report = gradcheck.check_network(network, x, t, tolerance=tolerance, coords=coords, rng=rng)
    emit(report.to_record())
    for p in report.parameters:
        debug(
            f"{p.name:>8} {p.max_relative_error:.2e} at {p.worst_index} "
            f"({p.checked} checked, {p.skipped_kinks} skipped near kinks)"
        )
    if report.unchecked:
        raise CheckFailed(
            f"gradient check inconclusive: no point of {', '.join(report.unchecked)} could be "
            "compared (every step flipped a ReLU or max-pool kink)",
            hint="try another --set seed=N or a larger --coords",
        )
    if not report.ok:
        worst = report.worst
        assert worst is not None
        layer = worst.name.split(".")[0]
        where = f"layer {layer} ({network.layer_name(int(layer))})" if layer.isdigit() else "input"
        raise CheckFailed(
            f"gradient check failed: {worst.name} of {where} has relative error "
            f"{worst.max_relative_error:.3g} > tolerance {tolerance:g} at index "
            f"{list(worst.worst_index)}",
            hint="its backward disagrees with its forward",
        )
    log(f"gradient check passed: max relative error {report.max_relative_error:.3g}")


def _data_shape(cfg: Any, loaded: LoadedConfig) -> tuple[tuple[int, ...], int]:
    """Input shape and class count; known datasets need no files, `idx` reads its folder."""
    from .data import DATASETS

    info = DATASETS[cfg.data.dataset]
    if info.image_shape is not None and info.num_classes is not None:
        return (1, *info.image_shape), info.num_classes
    dataset = experiment.load_dataset(cfg, offline=True, quiet=True)
    return tuple(dataset.x_train.shape[1:]), int(dataset.num_classes)


# ---------------------------------------------------------------------------------------------
# download


@cli.command(epilog=EXIT_CODES)
@click.option(
    "--dataset",
    default="mnist",
    show_default=True,
    help="mnist, fashion-mnist, or idx (a folder of IDX files given by --data-dir).",
)
@data_dir_option
@mirror_option
@offline_option
def download(dataset: str, data_dir: str | None, mirrors: tuple[str, ...], offline: bool) -> None:
    """Fetch and verify a dataset; prints its folder and each file's SHA-256 and source."""
    from . import data

    result = data.fetch(
        dataset, data_dir, mirrors=mirrors, offline=offline or None, quiet=OPTIONS.quiet
    )
    emit(result.to_record())
    log(f"{result.dataset}: four files verified in {result.folder}")


@cli.command(name="presets")
def presets_command() -> None:
    """List the preset configs shipped with bptrain (one JSON line)."""
    emit({"event": "presets", "default": DEFAULT_PRESET, "presets": preset_names()})
