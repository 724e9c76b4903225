"""OUT/best.yaml: the full config of the study's best trial, and the command that retrains it."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from ... import files
from ...errors import ConfigError
from ...run import inputs
from ...run.inputs import DataOptions
from .storage import best_of
from .worker import Job

log = logging.getLogger("bptrain.sweep")


def retrain_command(path: Path, threads: int, data: DataOptions) -> str:
    """`bptrain train OUT/best.yaml --threads N` with the data options the sweep was given,
    quoted for the shell, so that it runs as printed (the trials read the same data)."""
    words = ["bptrain", "train", str(path), "--threads", str(threads)]
    if data.data_dir is not None:
        words += ["--data-dir", data.data_dir]
    for mirror in data.mirrors:
        words += ["--mirror", mirror]
    if data.offline:
        words.append("--offline")
    return shlex.join(words)


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class BestFile:
    """OUT/best.yaml, replaced atomically (bptrain.files) whenever the best trial changes."""

    def __init__(self, path: Path, job: Job) -> None:
        self.path, self.job = path, job
        self.written: int | None = None

    @property
    def command(self) -> str:
        return retrain_command(self.path, self.job.threads, self.job.data)

    def check(self) -> None:
        """Before any trial: a best.yaml that is a folder, FIFO, device or symlink is refused,
        and the folder must take a file (exit 4)."""
        files.refuse_special(self.path, label="best.yaml")
        files.check_folder(self.path.parent, label="best.yaml", target=self.path)

    def refresh(self, study: Any) -> Any:
        """Write the best trial's config if it changed; returns the best trial (or None).
        Read again after writing: another process may have found a better one meanwhile."""
        best = best_of(study)
        for _ in range(3):
            if best is None or best.number == self.written:
                return best
            config = best.user_attrs.get("config")
            if not isinstance(config, dict):
                return best
            self._write(best, config)
            self.written = best.number
            best = best_of(study)
        return best

    def _write(self, best: Any, config: dict[str, Any]) -> None:
        try:
            text = inputs.config_of(str(self.path), raw=config).config.to_yaml()
        except ConfigError as error:
            log.warning(f"trial {best.number}: its recorded config is unusable ({error})")
            return
        params = ", ".join(f"{k}={short(v)}" for k, v in best.params.items())
        job = self.job
        header = (
            f"# The best trial of sweep study '{job.study}' ({job.storage.shown}): trial "
            f"{best.number}, {job.spec.metric} {best.value:.6g}\n# {params}\n"
            f"# Retrain it: {self.command}\n"
        )
        files.write_bytes(self.path, header + text, overwrite=True, label="best.yaml")
