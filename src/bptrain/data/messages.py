"""The data layer's error messages: one short line each (what, where, how to fix)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .cache import Location, candidates
from .datasets import FILE_NAMES, DatasetInfo, known_file
from .download import MirrorsFailed
from .idx import ChecksumMismatch, CorruptFileError


@dataclass(frozen=True)
class Bad:
    """Why one file cannot be used: no copy at all (no errors), or what is wrong with each copy."""

    errors: tuple[CorruptFileError, ...] = ()

    @property
    def missing(self) -> bool:
        return not self.errors

    def describe(self) -> str:
        """'NAME.gz is corrupt: reason; ...' for each copy, or 'missing'."""
        return "; ".join(f"{e.path.name} is corrupt: {e.reason}" for e in self.errors) or "missing"


def other_dataset(info: DatasetInfo, bad: dict[str, Bad], found_any: bool) -> str | None:
    """The known dataset whose files these are, when every bad copy is that dataset's."""
    owners = {_owner(info, problem) for problem in bad.values() if not problem.missing}
    if found_any or len(owners) != 1:
        return None  # a mix: report each file as it is
    return owners.pop()


def _owner(info: DatasetInfo, problem: Bad) -> str | None:
    for error in problem.errors:
        if isinstance(error, ChecksumMismatch):
            hit = known_file(error.sha256)
            if hit is not None and hit[0] != info.name:
                return hit[0]
    return None


def other_dataset_error(info: DatasetInfo, folder: Path, other: str) -> DataError:
    """The files are fine, the dataset name is not: say which one they are."""
    return DataError(
        f"{folder}: these are the {other} files (their checksums match), not {info.name}",
        hint=f"add --set data.dataset={other}, or --dataset {other} to bptrain download",
    )


def bad_files_error(info: DatasetInfo, folder: Path, bad: dict[str, Bad]) -> DataError:
    """A user's folder with damaged files: never advise deleting them, it is not our folder."""
    items = [f"{name}(.gz) is missing" if b.missing else b.describe() for name, b in bad.items()]
    return DataError(
        f"{info.name}: bad files in {folder}: " + "; ".join(items),
        hint="replace them with good copies, or point --data-dir at another folder",
    )


def missing_error(
    info: DatasetInfo, location: Location, bad: dict[str, Bad], *, offline: bool, mirrors: bool
) -> DataError:
    """Nothing can be downloaded: name every file needed and each way to provide it."""
    folder = location.folder
    if not location.owned:
        have = sum(1 for name in FILE_NAMES if candidates(folder, name))
        fetch = "run without --offline" if offline and mirrors else "pass --mirror URL"
        return DataError(
            f"{folder} holds {have} of the 4 {info.name} files; {_are_missing(list(bad))}",
            hint=f"put {_them(bad)} there, or {fetch} to download {_them(bad)} into that folder",
        )
    items = [f"{n}(.gz)" if b.missing else f"{n}(.gz) ({b.describe()})" for n, b in bad.items()]
    why = "offline" if offline else "no mirror is known"
    route = "--data-dir FOLDER --offline" if offline else "--data-dir FOLDER"
    last = "run without --offline" if offline and mirrors else "pass --mirror URL"
    return DataError(
        f"{info.name}: {why}, and {folder} lacks " + ", ".join(items),
        hint=f"put good copies there, use {route} with a folder that holds them, or {last}",
    )


def download_error(
    info: DatasetInfo, location: Location, error: MirrorsFailed, remaining: Sequence[str]
) -> DataError:
    """Every mirror failed: what failed, then every file still needed and where it goes."""
    folder = location.folder
    if not location.owned:
        hint = f"{_are_missing(remaining)} from {folder}: put {_them(remaining)} there"
        return DataError(f"{info.name}: {error.message}", hint=hint + ", or use another mirror")
    if len(remaining) == len(FILE_NAMES):  # all four: the count says it in fewer characters
        what = f"all 4 {info.name} files are missing"
    else:
        what = _are_missing(remaining)
    hint = f"{what} from {folder}: put {_them(remaining)} there, or use --data-dir FOLDER"
    return DataError(f"{info.name}: {error.message}", hint=hint + " --offline, or --mirror URL")


def _are_missing(names: Sequence[str]) -> str:
    files = ", ".join(f"{name}(.gz)" for name in names)
    return f"{files} {'is' if len(names) == 1 else 'are'} missing"


def _them(names: Sequence[str] | dict[str, Bad]) -> str:
    return "it" if len(names) == 1 else "them"
