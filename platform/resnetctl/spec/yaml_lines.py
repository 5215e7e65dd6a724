"""Read a YAML document with where each key of it is written, and keys written twice: the one
reader of job specs and cluster configs alike.

PyYAML's loaders keep the last of two equal keys in a mapping without a word, so a value the
author fixed further down silently loses to, or wins over, an older one. The node tree from
`yaml.compose` still has both, with their lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FieldPath = tuple[str | int, ...]

# `<<` merges another mapping in; several merge keys are how YAML spells multiple bases.
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class DuplicateKey:
    """A key given twice in one mapping: its path and the lines of both occurrences."""

    path: FieldPath
    first_line: int
    line: int


@dataclass(frozen=True)
class YamlDocument:
    """A parsed document: its data (as `yaml.safe_load` gives it), the line of every key and
    list item, and the keys given twice."""

    data: Any
    lines: dict[FieldPath, int]
    duplicates: list[DuplicateKey]


class YamlSyntaxError(ValueError):
    """Text that is not YAML: what is wrong, and where (1-based) when PyYAML knows."""

    def __init__(self, problem: str, line: int | None, column: int | None) -> None:
        self.problem, self.line, self.column = problem, line, column
        super().__init__(problem)


class UnreadableFile(ValueError):
    """A file that is not a YAML text file: missing, a folder, unreadable or not UTF-8."""


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a YAML file; `UnreadableFile` says in a few words why it cannot be had
    (a binary file is named as such, not decoded into a traceback)."""
    file = Path(path)
    if not file.is_file():
        raise UnreadableFile("is a directory, not a file" if file.is_dir() else "no such file")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"is not a YAML text file (byte {exc.start} is not UTF-8 text): name a .yaml file"
        ) from None


def read_document(text: str) -> YamlDocument:
    """Parse `text` once (safe loader) into its data, key lines and duplicate keys.

    Raises `YamlSyntaxError` for text that is not a single YAML document.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise YamlSyntaxError(problem, line, column) from None
    finally:
        loader.dispose()
    return YamlDocument(data, record_lines(node), duplicate_keys(node))


def record_lines(node: yaml.Node | None, path: FieldPath = ()) -> dict[FieldPath, int]:
    """The 1-based line of every key (and list item) under `node`, by its path."""
    lines: dict[FieldPath, int] = {}
    _walk(node, path, lines, [])
    return lines


def duplicate_keys(node: yaml.Node | None, path: FieldPath = ()) -> list[DuplicateKey]:
    """Every key that a mapping under `node` gives more than once, in document order."""
    found: list[DuplicateKey] = []
    _walk(node, path, {}, found)
    return found


def _walk(
    node: yaml.Node | None,
    path: FieldPath,
    lines: dict[FieldPath, int],
    duplicates: list[DuplicateKey],
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*path, key_node.value)
            line = key_node.start_mark.line + 1
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                duplicates.append(DuplicateKey(child, seen[ident], line))
            else:
                seen[ident] = line
            lines[child] = line
            _walk(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, duplicates)
