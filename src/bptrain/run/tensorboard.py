"""`train --tensorboard DIR`: each epoch record's numbers as TensorBoard scalars (step = epoch).

With `histograms`, the distributions of every parameter and buffer ("weights/1.W") and of each
parameter's gradient ("gradients/1.W") are added per epoch. The gradients are those of the
epoch's last step: an epoch mean would cost a second copy of every gradient on every step.

The writer is tensorboardX (the `tensorboard` extra): it needs neither TensorFlow nor PyTorch.
Its event files are logs TensorBoard reads while they grow, so they are appended to and
flushed after every epoch, not published whole like the files of bptrain.files; the folder is
checked (made, writable: exit 4) before the data loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import extras, files
from ..engine.network import Network
from ..errors import DestinationError

log = logging.getLogger(__name__)

# Epoch record key -> scalar tag; TensorBoard groups tags by what comes before the "/".
EPOCH_SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/validation",
    "lr": "learning_rate",
    "seconds": "time/epoch_seconds",
    "samples_per_second": "time/samples_per_second",
    "wall_seconds": "time/wall_seconds",
}
# Summary record key -> scalar tag, written at the step of the last epoch.
SUMMARY_SCALARS = {"test_loss": "loss/test", "test_accuracy": "accuracy/test"}


@dataclass(frozen=True)
class BoardOptions:
    """Where a run's events go, and whether the histograms go with them."""

    folder: str
    histograms: bool = False

    def for_trial(self, number: int) -> BoardOptions:
        """A sweep trial's own run folder, DIR/trial-NNNN, beside its siblings."""
        return BoardOptions(str(Path(self.folder) / f"trial-{number:04d}"), self.histograms)


def check(options: BoardOptions, command: str = "train --tensorboard") -> None:
    """Before any work: the writer is installed (exit 2) and the folder writable (exit 4)."""
    extras.require("tensorboardX", "tensorboard", command)
    files.check_folder(Path(options.folder), label="--tensorboard")


def open_board(options: BoardOptions | None, root: bool, dry_run: bool) -> Board | None:
    """The run's writer: none without --tensorboard, on MPI ranks but the first, in a dry run."""
    if options is not None and dry_run:
        log.info("dry run: no TensorBoard events written")
    return Board(options) if options is not None and root and not dry_run else None


class Board:
    """An open event writer for one run."""

    def __init__(self, options: BoardOptions) -> None:
        tensorboardx = extras.require("tensorboardX", "tensorboard", "train --tensorboard")
        self.histograms = options.histograms
        try:
            self.writer = tensorboardx.SummaryWriter(logdir=options.folder)
        except OSError as error:
            raise DestinationError(
                f"cannot write --tensorboard {options.folder}: {error.strerror or error}",
                hint="choose another folder, or fix its permissions or free space",
            ) from None

    def epoch(self, record: dict[str, Any], network: Network) -> None:
        """One epoch's scalars (and histograms), flushed: TensorBoard shows it at once."""
        step = int(record["epoch"])
        self._scalars(record, EPOCH_SCALARS, step)
        if self.histograms:
            for name, value in network.arrays.items():
                self.writer.add_histogram(f"weights/{name}", value, step)
            for name, value in network.grads.items():
                self.writer.add_histogram(f"gradients/{name}", value, step)
        self.writer.flush()

    def summary(self, record: dict[str, Any]) -> None:
        self._scalars(record, SUMMARY_SCALARS, int(record["epochs"]))
        self.writer.flush()

    def _scalars(self, record: dict[str, Any], tags: dict[str, str], step: int) -> None:
        for key, tag in tags.items():
            value = record.get(key)
            if value is not None:  # no validation split: no validation curve
                self.writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        self.writer.close()
