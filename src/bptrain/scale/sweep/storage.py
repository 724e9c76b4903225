"""A sweep's study storage (a journal file, or a database URL) and how its trials count."""

import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError

log = logging.getLogger("bptrain.sweep")

# Database drivers Optuna's URLs may need, for the error that names the missing one.
DRIVERS = {"postgresql": "pip install psycopg2-binary", "mysql": "pip install PyMySQL (and use "
           "mysql+pymysql://...)"}  # fmt: skip
SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


# ---------------------------------------------------------------------------------------------
# Storage: a journal file (default: OUT/journal.log), or a database URL


@dataclass(frozen=True)
class Storage:
    """Where a study lives: a journal file path or a database URL, as Optuna takes them."""

    where: str
    is_url: bool = False

    @property
    def shown(self) -> str:
        """For records and messages: a URL's password is never printed."""
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.where)

    @property
    def lock_file(self) -> str | None:
        """The file that serializes "count the trials, then ask for one" among processes."""
        if not self.is_url:
            return self.where + ".ask"
        if self.where.startswith("sqlite:///"):
            return self.where[len("sqlite:///") :] + ".ask"
        return None  # a database server: no shared file; see docs/sweep.md

    def open(self, *, heartbeat: bool = False) -> Any:
        """The Optuna storage object (a worker's carries a heartbeat on database servers)."""
        import optuna

        if not self.is_url:
            from .journal import JournalFile

            return optuna.storages.JournalStorage(JournalFile(self.where))
        kwargs: dict[str, Any] = {}
        if self.where.startswith("sqlite"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        elif heartbeat:  # a machine that dies: its trials are failed by the others
            kwargs.update(heartbeat_interval=60, grace_period=180)
        try:
            return self._rdb(optuna, kwargs)
        except ImportError as error:
            scheme = self.where.split(":")[0].split("+")[0]
            raise ConfigError(
                f"--storage {self.shown}: its database driver is not installed ({error})",
                hint=DRIVERS.get(scheme),
            ) from None
        except Exception as error:  # SQLAlchemy's: a bad URL, a server that is not there
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise ConfigError(f"cannot open --storage {self.shown}: {first}") from None

    def _rdb(self, optuna: Any, kwargs: dict[str, Any], attempts: int = 5) -> Any:
        """The database storage; processes that create its tables at the same moment clash
        (a unique-constraint error for all but one), so a failure is retried a few times."""
        for attempt in range(attempts):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(self.where, **kwargs)
            except ImportError:
                raise
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")


def storage_of(storage: str | None, out: Path) -> Storage:
    """The --storage a user gave (or OUT/journal.log), checked before anything is created."""
    if storage is None:
        return Storage(str(out / "journal.log"))
    if "://" in storage:
        given = Storage(storage, is_url=True)
        scheme = storage.split("://")[0].split("+")[0]
        if scheme not in SCHEMES:
            raise ConfigError(
                f"--storage {given.shown}: unsupported URL scheme {scheme!r}",
                hint="give a journal file path, or a sqlite:///, postgresql:// or mysql:// URL",
            )
        if scheme == "sqlite" and (storage in ("sqlite://", "sqlite:///") or ":memory:" in storage):
            raise ConfigError(
                "--storage: an in-memory SQLite database cannot be shared with worker processes",
                hint="give a file: sqlite:///path/study.db",
            )
        return given
    path = Path(storage)
    if path.is_dir():
        raise ConfigError(
            f"--storage {path} is a folder", hint=f"give a journal file, e.g. {path}/journal.log"
        )
    if not path.parent.is_dir():
        raise ConfigError(f"--storage {path}: the folder {path.parent} does not exist")
    return Storage(str(path))


# ---------------------------------------------------------------------------------------------
# Counting trials


def counts(trial: Any) -> bool:
    """Whether a trial counts toward the study's `trials`: every trial but a FAIL that was not
    the trial's own doing (interrupted, or left by a process that died), so a rerun makes up
    for those. A trial that diverged or made a bad config counts (its worker marks it)."""
    return trial.state.name != "FAIL" or bool(trial.user_attrs.get("counted"))


def done_count(trials: list[Any]) -> int:
    return sum(1 for t in trials if counts(t) and t.state.is_finished())


def best_of(study: Any) -> Any:
    """The study's best COMPLETE trial, or None."""
    try:
        return study.best_trial
    except ValueError:
        return None


def trial_record(trial: Any, epochs: int | None, seconds: float, path: Path) -> dict[str, Any]:
    """The `trial` record of a trial that ended. One the storage still holds as RUNNING ended
    without its state being written (a full disk): it failed, and the next run records it so."""
    state = trial.state.name if trial.state.is_finished() else "FAIL"
    return {
        "event": "trial",
        "number": trial.number,
        "params": dict(trial.params),
        "value": trial.value if state in ("COMPLETE", "PRUNED") else None,
        "state": state,
        "epochs": epochs,
        "seconds": round(seconds, 3),
        "checkpoint": str(path) if path.exists() else None,
    }


def find_trial(study: Any, number: int) -> Any:
    return next(t for t in reversed(study.get_trials(deepcopy=False)) if t.number == number)
