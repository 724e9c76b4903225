"""`predict --save-preprocessed DIR`: the image the network saw, as a PNG a person can look at.

Files are named NNNNN-STEM.png (NNNNN counts the images, since names may repeat), and written by
files.py like every file bptrain writes: atomically, never over a FIFO or device. Before any
work the folder is made if needed and proved writable, and a folder that already holds such
images is refused without --overwrite (a run's images are never mixed into, or over, another's).

A batch's images are written by a few threads at once: each file is fsynced before it gets its
name, and one fsync at a time costs ~10 ms (10,000 images: 100 s); overlapping ones share the
file system's journal commits (3,000 small files: 32 s one by one, 1.6 s with 8 threads).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..console import shown_name
from ..errors import DestinationError
from ..files import check_folder, kind_of, write_bytes
from .decode import Item
from .preprocess import png_bytes

LABEL = "--save-preprocessed"
WRITERS = 8  # threads writing at once (see the module's docstring)
_SAVED_NAME = re.compile(r"[0-9]{5,}-.*\.png", re.DOTALL)  # what save() names its files


class _Prepared(Protocol):
    item: Item
    x: np.ndarray


class PreprocessedFolder:
    """Where the preprocessed images of one run go; checked when made, before any work.

    A context manager: its writer threads end, with every write finished, when it exits."""

    def __init__(self, folder: Path, *, overwrite: bool) -> None:
        self.folder, self.overwrite = Path(folder), overwrite
        kind = kind_of(self.folder)
        if kind is not None and not self.folder.is_dir():  # a symlink to a folder will do
            raise DestinationError(
                f"{LABEL} {self.folder} is {kind}, not a folder",
                hint="choose a folder, or a path that does not exist yet",
            )
        check_folder(self.folder, label=LABEL)
        if not overwrite:
            self._refuse_earlier_images()
        self._writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="save-preprocessed")

    def __enter__(self) -> PreprocessedFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._writers.shutdown(wait=True, cancel_futures=True)

    def save_batch(self, first: int, batch: Sequence[_Prepared]) -> Iterator[None]:
        """Write a batch's images, numbered from `first`, at once; yield as each one in turn is
        on disk. On a failure, the writes under way finish (no half file stays) and it raises."""
        futures = [
            self._writers.submit(self.save, first + n, one.item, one.x)
            for n, one in enumerate(batch)
        ]
        try:
            for future in futures:
                future.result()
                yield
        finally:
            for future in futures:
                future.cancel()
            wait(futures)

    def save(self, number: int, item: Item, pixels: np.ndarray) -> Path:
        """Write one image (a DestinationError, exit 4, if it cannot be written)."""
        stem = Path(item.input).stem if item.input != "-" else "stdin"
        suffix = "" if item.index is None else f"-{item.index}"
        path = self.folder / f"{number:05d}-{stem}{suffix}.png"
        write_bytes(path, png_bytes(pixels), overwrite=self.overwrite, label=LABEL)
        return path

    def _refuse_earlier_images(self) -> None:
        try:
            names = sorted(n for n in os.listdir(self.folder) if _SAVED_NAME.fullmatch(n))
        except OSError as error:
            raise DestinationError(f"cannot list {LABEL} {self.folder}: {error.strerror}") from None
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise DestinationError(
                f"{LABEL} {self.folder} already holds preprocessed images "
                f"({shown_name(names[0])}{more})",
                hint="pass --overwrite to replace them, or choose an empty or new folder",
            )
