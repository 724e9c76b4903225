"""Your own code, imported from a file you name: one module per file content, errors at file:line.

bptrain imports a file only when a person names it: on the command line (`check FILE.py`,
`--layers FILE.py`) or in a config they train. Never because a checkpoint mentions it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import ConfigError
from ..registry import FILE_TYPE  # a layer type naming a class in a file: "my_layers.py:Relu"

# The character a learner meets in the seed's Sigmoid: `def __init__（self):`.
_FULL_WIDTH = {"（": "(", "）": ")", "，": ",", "：": ":", "＝": "="}

_IMPORTED: dict[tuple[str, str], ModuleType] = {}  # (resolved path, sha256) -> module


@dataclass(frozen=True)
class ClassRef:
    """`FILE.py[:CLASS]` from a command line or a config."""

    path: Path
    cls: str | None = None

    @classmethod
    def parse(cls, text: str) -> ClassRef:
        match = FILE_TYPE.match(text)
        if match:
            return cls(Path(match["file"]), match["cls"])
        return cls(Path(text))

    def __str__(self) -> str:
        return f"{self.path}:{self.cls}" if self.cls else str(self.path)


def is_file_type(name: object) -> bool:
    """Whether a layer `type:` names a class in a Python file."""
    return isinstance(name, str) and FILE_TYPE.match(name) is not None


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(_read(path)).hexdigest()


def _read(path: Path) -> bytes:
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise ConfigError(f"{path} {what}", hint="give the path of a .py file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


def import_file(path: Path) -> ModuleType:
    """The module a Python file defines, imported once per content.

    A file that fails to import is one ConfigError (exit 2) naming the file and line: a
    syntax error, a missing name, anything the module's top level raises.
    """
    data = _read(path)
    key = (str(path.resolve()), hashlib.sha256(data).hexdigest())
    if key in _IMPORTED:
        return _IMPORTED[key]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"bptrain_custom_{key[1][:12]}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not a Python file bptrain can import")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[name]
        raise _syntax_error(path, error) from None
    except Exception as error:  # the user's code may raise anything at import
        del sys.modules[name]
        line = _line_in(path, error)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: importing it raised {type(error).__name__}: {error}",
            hint="fix the file so that `python " + str(path) + "` runs",
        ) from None
    _IMPORTED[key] = module
    return module


def imported_sha256(module: ModuleType) -> str:
    """The SHA-256 of the very bytes `import_file` imported `module` from."""
    return next(sha for (_, sha), known in _IMPORTED.items() if known is module)


def _syntax_error(path: Path, error: SyntaxError) -> ConfigError:
    text = error.text or ""
    odd = next((c for c in text if c in _FULL_WIDTH), None)
    hint = (
        f"'{odd}' is a full-width character (a Chinese or Japanese input method types it); "
        f"type '{_FULL_WIDTH[odd]}' instead"
        if odd
        else None
    )
    return ConfigError(f"{path}:{error.lineno}: {error.msg}: {text.strip()}", hint=hint)


def _line_in(path: Path, error: BaseException) -> int | None:
    """The last line of `path` the traceback of `error` passed through."""
    target = str(path.resolve())
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename and Path(frame.filename).resolve().as_posix() == target
    ]
    return lines[-1] if lines else None


def classes_in(module: ModuleType) -> list[type]:
    """The classes the module's own file defines (not those it imports), in source order."""
    lines = definitions(Path(str(module.__file__)))
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__
    ]
    return sorted(found, key=lambda cls: lines.get(cls.__name__, [0])[-1])


def class_from(ref: ClassRef) -> type:
    """The class a `FILE.py:CLASS` reference names; a ConfigError listing the file's classes."""
    module = import_file(ref.path)
    value = getattr(module, ref.cls or "", None)
    if isinstance(value, type):
        return value
    names = [c.__name__ for c in classes_in(module)]
    raise ConfigError(
        f"{ref.path} has no class {ref.cls!r}; it defines: {', '.join(names) or 'no classes'}"
    )


def definitions(path: Path) -> dict[str, list[int]]:
    """Every top-level class name in the file with the lines it is defined on (in order).

    The seed defines Affine twice; Python keeps the last one, and a learner should know.
    """
    tree = ast.parse(_read(path), filename=str(path))
    lines: dict[str, list[int]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            lines.setdefault(node.name, []).append(node.lineno)
    return lines
