"""Labelled images for `eval --images`: a folder per class (torchvision's ImageFolder, Keras).

A class folder is named by the class's index or by its name:
- an index is ASCII digits only: `3`, and `03` or `007` (zero-padded for sorting) are class 3
  and 7. Anything else made of no letters names no class and is refused as `10` is: a sign
  (`-1`, `+3`), a space (` 7`), a decimal point (`3.0`), or digits of another script (`٣`,
  `³`), because each of those reads as something else to someone;
- a name matches ignoring case, spaces and punctuation: `Trouser`, `ANKLE BOOT`, and `t-shirt`,
  `tshirt_top` or `top` for "T-shirt/top" (each '/'-part of a class name is a name too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .decode import InputError
from .read import image_files, os_reason


def class_folders(root: Path, class_names: Sequence[str]) -> list[tuple[str, int]]:
    """(file, label) pairs of a folder-per-class tree, sorted; InputError for a folder that
    names no class, an empty tree, or one without images."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "no such folder" if not root.exists() else "not a folder")
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(str(root), os_reason(exc, "cannot list")) from None
    accepted = _accepted(class_names)
    if not folders:
        raise InputError(str(root), f"no class folders in it (name them {accepted})")
    names = _name_lookup(class_names)
    pairs: list[tuple[str, int]] = []
    for folder in folders:
        label = _label_of(folder.name, len(class_names), names)
        if label is None:
            raise InputError(str(folder), f"names no class (class folders are named {accepted})")
        pairs += [(str(path), label) for path in image_files(folder, recursive=True)]
    if not pairs:
        raise InputError(str(root), "no image or .npy files in its class folders")
    return pairs


def _label_of(folder: str, classes: int, names: dict[str, int]) -> int | None:
    """The class a folder's name stands for (the module's rule), or None."""
    if folder.isascii() and folder.isdigit():
        label = int(folder)
        return label if label < classes else None
    key = _name_key(folder)
    return names.get(key) if any(ch.isalpha() for ch in key) else None


def _name_lookup(class_names: Sequence[str]) -> dict[str, int]:
    """Name keys -> labels: each class name and each '/'-part of it (the first class wins)."""
    lookup: dict[str, int] = {}
    for label, class_name in enumerate(class_names):
        for name in (class_name, *class_name.split("/")):
            lookup.setdefault(_name_key(name), label)
    return lookup


def _name_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _accepted(class_names: Sequence[str]) -> str:
    indices = f"0..{len(class_names) - 1}"
    names = [n for n in class_names if n != str(class_names.index(n))]
    return f"{indices} or {', '.join(names)}" if names else indices
