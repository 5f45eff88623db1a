"""YAML to plain Python values, remembering where in the file each value was.

PyYAML's composer gives nodes with marks; this module turns them into dicts,
lists and scalars (with the safe loader's scalar rules) and records, for every
path into the result, the line and column of its value and, for mapping
entries, of its key. Duplicate keys, which PyYAML would silently overwrite, are
errors here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml

__all__ = ["Location", "Path", "SourceMap", "YAMLProblem", "load_yaml"]

Path: TypeAlias = tuple[str | int, ...]
"""Where a value is in the document: mapping keys and sequence indexes from the root."""


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a source file; line and column count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(slots=True)
class SourceMap:
    """Locations of the values (and mapping keys) of one loaded document."""

    file: str
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)

    def value(self, path: Path) -> Location:
        """Where the value at ``path`` is, or its nearest enclosing value that has a location."""
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return Location(self.file, 1, 1)

    def key(self, path: Path) -> Location:
        """Where the key of the mapping entry at ``path`` is; else where its value is."""
        return self.keys.get(path) or self.value(path)


class YAMLProblem(Exception):
    """The text is not YAML this loader accepts; ``location`` says where."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


_PLAIN_TAGS = frozenset(("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"))


def _location(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.map = SourceMap(file)
        self._scalars = yaml.SafeLoader("")  # only its scalar constructors are used
        self._seen: set[int] = set()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.map.values[path] = _location(self.map.file, node.start_mark)
        if isinstance(node, yaml.CollectionNode):
            # An alias makes the composer hand out the same node twice; expanding
            # nested aliases is exponential ("billion laughs"), so refuse them.
            if id(node) in self._seen:
                raise YAMLProblem(
                    self.map.values[path], "anchors and aliases (&name, *name) are not supported"
                )
            self._seen.add(id(node))
            if node.tag not in _PLAIN_TAGS:
                raise YAMLProblem(self.map.values[path], f"unsupported tag {node.tag!r}")
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YAMLProblem(
                        _location(self.map.file, key_node.start_mark), "a key must be a plain value"
                    )
                key = self._scalars.construct_object(key_node)
                if not isinstance(key, str):
                    raise YAMLProblem(
                        _location(self.map.file, key_node.start_mark),
                        f"a key must be text, got {key!r}; put it in quotes",
                    )
                if key in result:
                    first = self.map.keys[(*path, key)]
                    raise YAMLProblem(
                        _location(self.map.file, key_node.start_mark),
                        f"duplicate key {key!r} (first at line {first.line})",
                    )
                self.map.keys[(*path, key)] = _location(self.map.file, key_node.start_mark)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self._scalars.construct_object(node)


def load_yaml(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain values and their source map.

    Raises ``YAMLProblem`` for text that is not YAML, that holds more than one
    document, aliases a mapping or list, uses tags beyond the safe ones, nests
    too deeply, or repeats a key.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise YAMLProblem(Location(file, 1, 1), "invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = _location(file, mark) if mark is not None else Location(file, 1, 1)
        problem = exc.problem or exc.context or "not valid YAML"
        raise YAMLProblem(location, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YAMLProblem(Location(file, 1, 1), f"invalid YAML: {exc}") from None
    builder = _Builder(file)
    if node is None:
        return None, builder.map
    try:
        return builder.build(node, ()), builder.map
    except RecursionError:
        raise YAMLProblem(Location(file, 1, 1), "invalid YAML: nested too deeply") from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        location = _location(file, mark) if mark is not None else Location(file, 1, 1)
        raise YAMLProblem(location, f"invalid YAML: {exc.problem}") from None
