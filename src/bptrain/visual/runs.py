"""The RUNs `bptrain plot` reads: a checkpoint's stored history, or the JSON Lines that
`bptrain train` or `bptrain eval` printed; which one is told from the content (a checkpoint is
a zip file), never from the suffix."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, DataError
from ..run import checkpoint

MAX_JSONL_BYTES = 64 * 2**20  # a training log is kilobytes; this is not one
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
SERIES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
# No loss, accuracy or learning rate a run prints comes near this (float32 ends at 3.4e38);
# values far larger break the axes' arithmetic (1e308 overflows matplotlib's tick steps).
MAX_VALUE = 1e100
MAX_COUNT = 2**53  # a count past this is not a test set (and is no longer exact as a float)
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


@dataclass
class TrainingRun:
    """The epoch records of one training run, and what its title says about it."""

    source: str
    history: list[dict[str, Any]]
    name: str
    facts: list[str] = field(default_factory=list)  # dataset, seed, checkpoint
    test_accuracy: float | None = None
    label: str = ""

    def points(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one series, without its null (non-finite) values."""
        pairs = [(r["epoch"], r.get(key)) for r in self.history]
        kept = [(e, float(v)) for e, v in pairs if is_number(v) and math.isfinite(v)]
        return [e for e, _ in kept], [v for _, v in kept]

    def best(self) -> tuple[int, float] | None:
        """(epoch, accuracy) of the best validation accuracy (the first epoch reaching it)."""
        epochs, values = self.points("val_accuracy")
        if not values:
            return None
        i = max(range(len(values)), key=lambda k: (values[k], -k))
        return epochs[i], values[i]


@dataclass
class EvalRun:
    """One `bptrain eval` record: a confusion matrix to draw."""

    source: str
    record: dict[str, Any]
    line: int
    label: str = ""


def read_run(source: str, stdin: IO[bytes]) -> TrainingRun | EvalRun:
    """A RUN argument as a training run or an eval record, told apart by content."""
    if source == "-":
        data = stdin.read(MAX_JSONL_BYTES + 1)
        if data[:4] in ZIP_MAGIC:
            raise ConfigError(
                "stdin holds a checkpoint (a zip file)",
                hint="give the checkpoint's path as RUN; '-' reads JSON Lines",
            )
        return _from_jsonl("stdin", data)
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{path} is a folder", hint="give a checkpoint or a JSON Lines file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSONL_BYTES + 1)
    except FileNotFoundError:
        raise DataError(
            f"{path} does not exist", hint="give a checkpoint (.npz) or the JSON Lines of a run"
        ) from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None
    if data[:4] in ZIP_MAGIC:
        return _from_checkpoint(path)
    return _from_jsonl(str(path), data)


def _from_checkpoint(path: Path) -> TrainingRun:
    ckpt = checkpoint.load(path)  # a CheckpointError (exit 4) says what is wrong with it
    if not ckpt.history:
        raise DataError(
            f"checkpoint {path} has no finished epoch to plot",
            hint="it was stopped during its first epoch; resume it with bptrain train --resume",
        )
    info = ckpt.info
    metrics = ckpt.metrics
    accuracy = metrics.get("test_accuracy") if ckpt.complete else None
    history = [r for r in ckpt.history if is_number(r.get("epoch"))]
    for record in history:
        _check_series(f"{path} (epoch {record['epoch']})", record)
    return TrainingRun(
        source=str(path),
        history=history,
        name=info.name or path.stem,
        facts=[DATASET_NAMES.get(info.dataset, info.dataset), f"seed {info.seed}"],
        test_accuracy=accuracy if is_number(accuracy) else None,
    )


def _from_jsonl(name: str, data: bytes) -> TrainingRun | EvalRun:
    lines = _json_lines(name, data)
    evals = [(n, r) for n, r in lines if r.get("event") == "eval"]
    if evals:
        if len(evals) > 1:
            where = ", ".join(str(n) for n, _ in evals[:5])
            raise ConfigError(
                f"{name} holds {len(evals)} eval records (lines {where}); "
                "a confusion matrix is drawn from one",
                hint=f"pick one, e.g. sed -n {evals[0][0]}p {'FILE' if name == 'stdin' else name} "
                "| bptrain plot - --out cm.png",
            )
        line, record = evals[0]
        _not_beside_epochs(name, line, lines)
        return EvalRun(source=name, record=_checked_eval(name, line, record), line=line)
    epochs = [(n, r) for n, r in lines if r.get("event") == "epoch"]
    if not epochs:
        raise DataError(
            f"{name} has no epoch or eval records",
            hint="give the JSON Lines that bptrain train or bptrain eval printed, or a checkpoint",
        )
    return _training_from_jsonl(name, epochs, [r for _, r in lines if r.get("event") == "summary"])


def _not_beside_epochs(name: str, line: int, lines: list[tuple[int, dict[str, Any]]]) -> None:
    """An eval record and a training run's epochs in one file: refused, as two files are."""
    epochs = [n for n, r in lines if r.get("event") == "epoch"]
    if epochs:
        raise ConfigError(
            f"{name} holds an eval record (line {line}) and a training run's epoch records "
            f"(line {epochs[0]} on): a picture is either learning curves or one confusion matrix",
            hint="put each command's JSON Lines in a file of its own, and plot each one to its "
            "own --out",
        )


def _json_lines(name: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of each non-blank line; DataError naming the first bad line."""
    if len(data) > MAX_JSONL_BYTES:
        raise DataError(f"{name} is over {MAX_JSONL_BYTES // 2**20} MiB: not a run's JSON Lines")
    if not data.strip():
        raise DataError(
            f"{name} is empty",
            hint="give what bptrain train or eval printed: bptrain train ... > run.jsonl",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{name} is neither a bptrain checkpoint nor JSON Lines text (it is binary)",
            hint="give a checkpoint (.npz) or what bptrain train or eval printed",
        ) from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append((number, _json_record(name, number, line)))
    return records


def _json_record(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        # NaN or Infinity (bptrain writes null instead, but other tools may not): skipped.
        value = json.loads(line, parse_constant=lambda _: None)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{name}:{number}: not a JSON record ({error.msg} at column {error.colno})",
            hint="each line must be one JSON record as bptrain prints them on stdout; "
            "were its logs (stderr) sent into the file too?",
        ) from None
    except ValueError:  # Python reads no integer of over 4300 digits
        raise DataError(f"{name}:{number}: not a JSON record (a number too long to read)") from None
    except RecursionError:
        raise DataError(
            f"{name}:{number}: nested too deeply to be a record bptrain printed",
            hint="give the JSON Lines that bptrain train or bptrain eval printed",
        ) from None
    if not isinstance(value, dict):
        raise DataError(f"{name}:{number}: a JSON {type(value).__name__}, not a record")
    return value


def _training_from_jsonl(
    name: str, epochs: list[tuple[int, dict[str, Any]]], summaries: list[dict[str, Any]]
) -> TrainingRun:
    history = []
    for number, record in epochs:
        epoch = record.get("epoch")
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
            raise DataError(f"{name}:{number}: epoch must be a whole number, got {epoch!r}")
        if history and epoch <= history[-1]["epoch"]:
            raise DataError(
                f"{name}:{number}: epoch {epoch} after epoch {history[-1]['epoch']}: "
                "the file holds more than one run",
                hint="put each run's JSON Lines in a file of its own",
            )
        _check_series(f"{name}:{number}", record)
        history.append(record)
    summary = summaries[-1] if summaries else {}
    facts = [f"seed {summary['seed']}"] if is_number(summary.get("seed")) else []
    if isinstance(summary.get("checkpoint"), str):
        facts.append(summary["checkpoint"])
    accuracy = summary.get("test_accuracy")
    return TrainingRun(
        source=name, history=history, name=Path(name).name, facts=facts,
        test_accuracy=accuracy if is_number(accuracy) else None,
    )  # fmt: skip


def _check_series(where: str, record: dict[str, Any]) -> None:
    """Each series value of an epoch record is a number (or null) that an axis can show."""
    for key in SERIES:
        value = record.get(key)
        if value is not None and not is_number(value):
            raise DataError(f"{where}: {key} must be a number, got {value!r}")
        # An infinity (JSON's 1e999) is left out like a null; a finite giant is refused.
        if value is not None and abs(value) > MAX_VALUE and not _infinite(value):
            raise DataError(
                f"{where}: {key} = {_shown(value)} is beyond what a plot shows (|value| over "
                f"{MAX_VALUE:.0e}); no run bptrain trains prints such a value",
                hint="check what wrote this file; bptrain writes null for a value that overflowed",
            )


def _checked_eval(name: str, line: int, record: dict[str, Any]) -> dict[str, Any]:
    """The eval record, once its confusion matrix is a square of counts that fits its classes."""
    names, matrix = record.get("class_names"), record.get("confusion_matrix")
    where = f"{name}:{line}"
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise DataError(f"{where}: the eval record has no class_names list")
    k = len(names)
    if not (
        isinstance(matrix, list)
        and len(matrix) == k
        and all(isinstance(row, list) and len(row) == k for row in matrix)
    ):
        raise DataError(f"{where}: confusion_matrix is not {k}x{k} (one row per class name)")
    if not all(is_count(c) for row in matrix for c in row):
        raise DataError(f"{where}: confusion_matrix holds something other than counts")
    biggest = max(c for row in matrix for c in row)
    if biggest > MAX_COUNT:
        raise DataError(
            f"{where}: confusion_matrix holds the count {_shown(biggest)}, more than any test set "
            f"(counts over {MAX_COUNT:,} are not drawn)"
        )
    return record


def _infinite(value: float) -> bool:
    return isinstance(value, float) and math.isinf(value)


def _shown(value: float) -> str:
    """A number as %.4g, also an integer too large for a float (1e+400)."""
    try:
        return f"{float(value):.4g}"
    except OverflowError:
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[0]}e+{len(digits) - 1}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
