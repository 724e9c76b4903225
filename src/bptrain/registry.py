"""Registries: config names -> classes, with constructor arguments checked against signatures."""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

from .errors import ConfigError

T = TypeVar("T")

# A part name that names a class in a user's Python file: "my_layers.py:Relu" (the path may
# have folders). Here, at the bottom, so that config/ can tell such names apart (to make their
# paths absolute) without importing custom/, which imports them.
FILE_TYPE = re.compile(r"^(?P<file>.+\.py):(?P<cls>[A-Za-z_]\w*)$")


def short_type(name: str) -> str:
    """`/home/me/my_layers.py:Relu` -> `my_layers.py:Relu`: configs and records keep the whole
    path, people read the file's name; any other name is returned as it is."""
    match = FILE_TYPE.match(name)
    return f"{PurePath(match['file']).name}:{match['cls']}" if match else name


def did_you_mean(
    word: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """The choice `word` most likely meant: same name in other case, a known alias, or close.

    Aliases are names other libraries use (``dense`` for ``affine``); they are suggested, never
    accepted, so a config keeps one spelling of each part.
    """
    folded = {choice.casefold(): choice for choice in choices}
    key = str(word).casefold()
    if key in folded:
        return folded[key]
    for alias, target in (aliases or {}).items():
        if alias.casefold() == key and target.casefold() in folded:
            return folded[target.casefold()]
    matches = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[matches[0]] if matches else None


def suggestion(
    word: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None
) -> str | None:
    """A "did you mean 'x'?" hint, or None."""
    guess = did_you_mean(word, choices, aliases)
    return f"did you mean '{guess}'?" if guess else None


def unknown_name_error(
    kind: str,
    name: object,
    choices: Iterable[str],
    path: str,
    aliases: Mapping[str, str] | None = None,
) -> ConfigError:
    """A ConfigError for an unknown name that lists the choices and the closest match."""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} {name!r}; choices: {', '.join(choices)}",
        path=path,
        hint=suggestion(name, choices, aliases),
    )


class Named:
    """A part with a `name`: its registry key, set by Registry.register.

    A class nobody registered (say, a subclass a test makes of a registered layer) is
    named after itself, so messages never borrow the name of a registered parent class.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a class may name itself; register() names it anyway
            cls.name = cls.__name__


def type_matches(value: object, annotation: Any) -> bool:
    """Whether a config value (plain YAML data) fits a constructor annotation."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(type_matches(value, arg) for arg in get_args(annotation))
    if origin is Literal:
        return value in get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list, typing.Sequence) or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = get_args(annotation)
        if not args:
            return True
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            return len(args) == len(value) and all(map(type_matches, value, args))
        return all(type_matches(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def describe(annotation: Any) -> str:
    """A short human name for an annotation (``int``, ``float or null``)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is not None:
        return "list" if origin in (tuple, list) else getattr(origin, "__name__", str(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _takes_array(annotation: Any) -> bool:
    return annotation is np.ndarray or np.ndarray in get_args(annotation)


class Registry:
    """Names to classes for one kind of part (layer, loss, optimizer, initializer, schedule)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}
        self.aliases: dict[str, str] = {}  # other libraries' names -> ours, for suggestions
        self._key_aliases: dict[str, dict[str, str]] = {}
        self._added: set[str] = set()  # names of users' own classes (add_or_replace)

    def register(
        self,
        name: str,
        *,
        aliases: Iterable[str] = (),
        key_aliases: Mapping[str, str] | None = None,
    ) -> Callable[[type[T]], type[T]]:
        """Class decorator: register a class under `name`, which becomes its `name` attribute.

        `aliases` are other names for the part and `key_aliases` other names for its arguments
        (``size`` for conv2d's ``kernel``): a config that uses one gets a "did you mean".
        """

        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._classes[name] = cls
            self.aliases.update(dict.fromkeys(aliases, name))
            self._key_aliases[name] = dict(key_aliases or {})
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorate

    def add_or_replace(self, name: str, cls: type) -> None:
        """Register a user's own class (from a file or a package's entry point) under `name`.

        Unlike `register`, this replaces the class a user's code registered before under the
        same name: a file edited between two configs in one long-lived process brings its new
        class. A built-in name is never replaced (ValueError: callers let built-ins win).
        """
        if self.built_in(name):
            raise ValueError(f"{self.kind} {name!r} is built in; a user's class cannot replace it")
        self._classes[name] = cls
        self._key_aliases[name] = {}
        self._added.add(name)
        cls.name = name  # type: ignore[attr-defined]

    def built_in(self, name: object) -> bool:
        """Whether `name` is one of bptrain's own parts (not a user's added class)."""
        return name in self._classes and name not in self._added

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def get(self, name: object, path: str = "type") -> type:
        """The class registered as `name`; a ConfigError with a suggestion otherwise."""
        if not isinstance(name, str) or name not in self._classes:
            raise unknown_name_error(self.kind, name, self._classes, path, self.aliases)
        return self._classes[name]

    def parameters(self, name: str) -> dict[str, tuple[Any, Any]]:
        """Config-settable constructor arguments: {arg: (annotation, default)}.

        Arguments that take arrays (the seed's ``Affine(W, b)``) are for Python callers only.
        """
        cls = self._classes[name]
        hints = typing.get_type_hints(cls.__init__)
        params = inspect.signature(cls.__init__).parameters
        return {
            p.name: (hints.get(p.name, Any), p.default)
            for p in params.values()
            if p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and not _takes_array(hints.get(p.name))
        }

    def normalize(self, spec: str | Mapping[str, Any], path: str = "") -> dict[str, Any]:
        """A spec as a dict: a bare name ``"he"`` stands for ``{type: he}``."""
        if isinstance(spec, str):
            return {"type": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"expected a {self.kind} spec like {{type: ...}}, got {type(spec).__name__}",
                path=path,
            )
        if "type" not in spec:
            raise ConfigError(
                f"{self.kind} spec has no 'type'; choices: {', '.join(self.names())}", path=path
            )
        return dict(spec)

    def check(self, spec: str | Mapping[str, Any], path: str = "") -> list[ConfigError]:
        """Every problem with a spec (name, unknown or missing arguments, types), not raising."""
        try:
            spec = self.normalize(spec, path)
            self.get(spec["type"], f"{path}.type" if path else "type")
        except ConfigError as error:
            return [error]
        at = f"{path}." if path else ""
        params = self.parameters(spec["type"])
        errors = [
            error.within(path)
            for key, value in spec.items()
            if key != "type" and (error := self._check_key(spec["type"], params, key, value))
        ]
        return errors + [
            ConfigError(f"missing required key for {self.kind} '{spec['type']}'", path=at + key)
            for key, (_, default) in params.items()
            if default is inspect.Parameter.empty and key not in spec
        ]

    def _check_key(
        self, name: str, params: Mapping[str, tuple[Any, Any]], key: str, value: Any
    ) -> ConfigError | None:
        """The problem with one argument of part `name` (path relative to the spec), if any."""
        if key not in params:
            return ConfigError(
                f"unknown key for {self.kind} '{name}' (accepted: {', '.join(params) or 'none'})",
                path=str(key),
                hint=suggestion(key, params, self._key_aliases.get(name)),
            )
        annotation, _ = params[key]
        if not type_matches(value, annotation):
            return ConfigError(f"expected {describe(annotation)}, got {value!r}", path=str(key))
        return None

    def build(self, spec: str | Mapping[str, Any], path: str = "", **extra: Any) -> Any:
        """Construct the part a spec describes; errors name the dotted path."""
        errors = self.check(spec, path)
        if errors:
            raise errors[0]
        spec = self.normalize(spec, path)
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        try:
            return self.get(spec["type"])(**kwargs, **extra)
        except ConfigError as error:
            raise error.within(path) from None


@dataclass(frozen=True)
class Parts:
    """What a config may name: the registries and the dataset names it is checked against.

    config.py imports no registry; its caller passes the one set of parts (bptrain.parts.PARTS),
    so the config layer stays below the layers, losses, optimizers and data in the import graph.
    """

    layers: Registry
    losses: Registry
    optimizers: Registry
    schedules: Registry
    datasets: Collection[str]
    dataset_aliases: Mapping[str, str] = field(default_factory=dict)
    augmentations: Registry | None = None
