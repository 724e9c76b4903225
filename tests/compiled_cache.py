"""numba's compiled loops kept between test sessions, outside the clone (conftest's hooks).

A fresh clone's suite spent two minutes of its run compiling bptrain's numba loops (cache=True
writes them to src/bptrain/accel/__pycache__, which a new clone does not have). So a session
starts by copying the loops an earlier session compiled, from any clone, into that folder, and
ends by saving what it has. Every test process, subprocesses included, then finds them where
numba looks.

Why a copy and not NUMBA_CACHE_DIR: numba files a cache under a hash of the source folder's
absolute path, so a clone in another folder would never find it. In the tree, numba keys each
function's cache on its file's contents (numba 0.68 here; releases before numba's PR #10659 used
the file's mtime and size instead, which a clone sets anew: there a copy is never used, and the
loops compile as before), its bytecode, the CPU and numba's version. What numba does not see
is a change to a loop in another file that it inlined (compiled/gemm.py inlines
compiled/patches.py's gather_row), so the saved copies are filed under a hash of all of accel/
(every folder in it): they serve only the very sources that compiled them.

BPTRAIN_TEST_NUMBA_CACHE names the folder (default: $XDG_CACHE_HOME or ~/.cache, then
bptrain-tests/numba); "off" turns this off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import uuid
from pathlib import Path

KEEP = 3  # sets of sources kept (the oldest used go first): each is a few MB


def store_root() -> Path | None:
    setting = os.environ.get("BPTRAIN_TEST_NUMBA_CACHE", "")
    if setting.lower() == "off":
        return None
    if setting:
        return Path(setting)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "bptrain-tests" / "numba"


def accel_folder() -> Path | None:
    """src/bptrain/accel of the bptrain the tests import, without importing it (nor numba)."""
    spec = importlib.util.find_spec("bptrain.accel")
    locations = spec.submodule_search_locations if spec else None
    return Path(next(iter(locations))) if locations else None


def store_for(accel: Path, root: Path) -> Path | None:
    """The folder for these accel/ sources under this Python and numba (None without numba)."""
    try:
        numba = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        return None
    digest = hashlib.sha256(f"{sys.version_info[:2]} numba {numba}".encode())
    for source in sorted(accel.rglob("*.py")):
        name = source.relative_to(accel).as_posix()
        digest.update(name.encode() + b"\0" + source.read_bytes() + b"\0")
    return root / digest.hexdigest()[:20]


def _packages(accel: Path) -> list[Path]:
    """accel/ and each package in it, relative to accel/: each has a __pycache__ of its own."""
    return [p.parent.relative_to(accel) for p in sorted(accel.rglob("__init__.py"))]


def _units(folder: Path) -> dict[str, list[Path]]:
    """A function's cache is one unit: its index NAME.nbi and the NAME.<n>.nbc it lists."""
    units = {index.name[: -len(".nbi")]: [index] for index in folder.glob("*.nbi")}
    for data in folder.glob("*.nbc"):
        stem = data.name.rsplit(".", 2)[0]
        if stem in units:
            units[stem].append(data)
    return units


def restore(accel: Path, store: Path) -> int:
    """Copy into accel's __pycache__ folders every saved function they lack; how many."""
    if not store.is_dir():
        return 0
    copied = 0
    for package in _packages(accel):
        tree, saved = accel / package / "__pycache__", store / package
        if not saved.is_dir():
            continue
        tree.mkdir(exist_ok=True)
        have = _units(tree)
        missing = {stem: files for stem, files in _units(saved).items() if stem not in have}
        for files in missing.values():
            for file in sorted(files, key=lambda f: f.suffix == ".nbi"):  # the index last
                shutil.copy2(file, tree / file.name)
        copied += len(missing)
    os.utime(store)  # recently used: pruned last
    return copied


def _count(root: Path, packages: list[Path], cache: str) -> int:
    folders = (root / package / cache for package in packages)
    return sum(len(files) for f in folders if f.is_dir() for files in _units(f).values())


def save(accel: Path, store: Path) -> None:
    """Replace the saved set with the tree's when the tree holds more compiled functions.

    The set is written beside it and renamed into place, so a session restoring at the same
    time sees the old set, the new one or none, never half of one.
    """
    packages = _packages(accel)
    saved = _count(store, packages, "") if store.is_dir() else 0
    if _count(accel, packages, "__pycache__") <= saved:
        return
    fresh = store.with_name(f".{store.name}.{uuid.uuid4().hex}")
    for package in packages:
        tree = accel / package / "__pycache__"
        (fresh / package).mkdir(parents=True, exist_ok=True)
        for files in (_units(tree) if tree.is_dir() else {}).values():
            for file in files:
                shutil.copy2(file, fresh / package / file.name)
    old = store.with_name(f".{store.name}.old.{uuid.uuid4().hex}")
    if store.is_dir():
        os.replace(store, old)
    try:
        os.replace(fresh, store)
    except OSError:  # another session saved at the same moment: keep its set
        shutil.rmtree(fresh, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    _prune(store.parent)


def _prune(root: Path) -> None:
    sets = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in sets[:-KEEP]:
        shutil.rmtree(stale, ignore_errors=True)
