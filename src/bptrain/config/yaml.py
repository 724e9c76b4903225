"""The YAML reader of configs: safe, no duplicate keys, no tags, bounded alias expansion, and
the line of every key and item kept so that later errors can name file:line."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..errors import ConfigError

# The most values one YAML text may expand to. Aliases let a few lines stand for billions of
# values ("billion laughs"); real configs have a few hundred, so this only stops such bombs.
MAX_YAML_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as 1e-3 (YAML 1.1 makes them strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_STD = "tag:yaml.org,2002:"
# The tags plain YAML resolves by itself; any other tag (!!python/..., !!binary, !custom) was
# written on purpose, and SafeLoader would either refuse it or, on a mapping, quietly drop it.
_PLAIN_TAGS = {_STD + t for t in ("null", "bool", "int", "float", "str", "timestamp", "map", "seq")}


def parse_yaml(text: str, source: str, *, numbered: bool = True) -> tuple[Any, dict[str, int]]:
    """Parse YAML safely; return (data, {dotted path: line}); duplicate keys are errors.

    `numbered=False` (a --set value) leaves line numbers out of error locations.
    """
    loader = _Loader(text)
    builder = _Builder(loader, source, numbered)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise ConfigError(
                f"config uses YAML aliases that expand to more than {MAX_YAML_VALUES} values",
                path=source,
                hint="write the values out, or use aliases that nest less deeply",
            )
        data = builder.build(node, "") if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"invalid YAML: {problem}", path=builder.at(mark)) from None
    except (TypeError, RecursionError) as error:  # a list as a key; a self-referencing alias
        raise ConfigError(
            f"unsupported YAML ({error})", path=source, hint="use plain mappings, lists and scalars"
        ) from None
    finally:
        loader.dispose()
    return data, builder.lines


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values the tree under `node` holds once every alias is expanded.

    Each node is counted once (an alias is the same node object again), so this takes time in
    proportion to the text, not to the expansion, and refuses a bomb before anything is built.
    """
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node inside itself counts once here; building it fails later
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


# A mapping's entries: (key, key node, value node).
_Entry = tuple[Any, yaml.Node, yaml.Node]


class _Builder:
    """Plain data from a node tree, recording the line of every key and item.

    It walks every path an alias is used on (each path gets its own line): parse_yaml has
    checked first that they add up to at most MAX_YAML_VALUES. Merge keys (<<) are resolved
    here too: keys written in the mapping override merged ones, the first merged mapping wins
    among those, and a merged anchor is flattened once however often it is merged.
    """

    def __init__(self, loader: _Loader, source: str, numbered: bool) -> None:
        self.loader, self.source, self.numbered = loader, source, numbered
        self.lines: dict[str, int] = {}
        self._merged: dict[int, list[_Entry]] = {}  # a merged anchor is flattened once

    def at(self, mark: Any, path: str = "") -> str:
        """An error location: source:line (when numbered), then the dotted path."""
        where = f"{self.source}:{mark.line + 1}" if mark and self.numbered else self.source
        return f"{where}: {path}" if path else where

    def _check_tag(self, node: yaml.Node, path: str) -> None:
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace(_STD, "!!")
            raise ConfigError(
                f"YAML tags are not supported (found {tag})",
                path=self.at(node.start_mark, path),
                hint="remove the tag; a config is plain mappings, lists and scalars",
            )

    def build(self, node: yaml.Node, path: str) -> Any:
        self._check_tag(node, path)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[Any, Any]:
        own, merged = self._entries(node, path)
        first: dict[Any, int] = {}
        for key, key_node, _ in own:
            child = f"{path}.{key}" if path else str(key)
            if key in first:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {first[key]})",
                    path=self.at(key_node.start_mark, child),
                    hint="keep one of them",
                )
            first[key] = key_node.start_mark.line + 1
        out: dict[Any, Any] = {}
        for key, key_node, value_node in [*(e for e in merged if e[0] not in first), *own]:
            child = f"{path}.{key}" if path else str(key)
            out[key] = self.build(value_node, child)
            self.lines[child] = key_node.start_mark.line + 1
        return out

    def _entries(self, node: yaml.MappingNode, path: str) -> tuple[list[_Entry], list[_Entry]]:
        """(the entries written in the mapping, the merged ones not repeated among those)."""
        own: list[_Entry] = []
        merged: dict[Any, _Entry] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _STD + "merge":
                own.append((self._key(key_node, path), key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                for entry in self._flattened(source, path):
                    merged.setdefault(entry[0], entry)
        return own, list(merged.values())

    def _flattened(self, node: yaml.Node, path: str) -> list[_Entry]:
        """A merged mapping's effective entries: its own, and those it merges that it lacks."""
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(
                "<< merges a mapping or a list of mappings",
                path=self.at(node.start_mark, path),
            )
        if id(node) not in self._merged:
            self._merged[id(node)] = []  # a merge cycle ends here instead of recursing
            own, merged = self._entries(node, path)
            written = {entry[0]: entry for entry in own}  # of duplicates, the last one wins
            self._merged[id(node)] = [
                *(e for e in merged if e[0] not in written),
                *written.values(),
            ]
        return self._merged[id(node)]

    def _key(self, key_node: yaml.Node, path: str) -> Any:
        if key_node.tag == _STD + "value":  # a bare "=" key, which SafeLoader reads as "="
            key_node.tag = _STD + "str"
        self._check_tag(key_node, path)
        return self.loader.construct_object(key_node, deep=True)
