"""Dotted field paths (`train.optimizer.momentum`, `train.schedule.milestones.0`) and the one
way a value is written at one: `--set` and a sweep's trials alike go through `set_path`."""

from __future__ import annotations

from typing import Any

from resnetctl.spec.errors import SpecError

FieldPath = tuple[str | int, ...]


def parse_path(dotted: str) -> FieldPath:
    """`"train.schedule.milestones.0"` -> `("train", "schedule", "milestones", 0)`."""
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def dotted(path: FieldPath) -> str:
    """Inverse of `parse_path`."""
    return ".".join(map(str, path))


def set_path(data: dict[str, Any], path: FieldPath, value: Any, where: str) -> None:
    """Set `data[a][b][c] = value` for the path `(a, b, c)` of a spec's mapping, creating
    sections that are missing (a section left unset in the YAML).

    List items are addressed by index and must exist. Raises `SpecError` at `where` naming the
    part of the path that is a value rather than a section, or an index outside its list.
    Whether the path names a field is the spec's validation to say (unknown keys are errors).
    """
    if not path:
        raise SpecError.single(where, "empty field path")
    target: Any = data
    for depth, part in enumerate(path[:-1]):
        if isinstance(target, list):
            _check_index(target, part, path[: depth + 1], where)
            nxt = target[part]  # type: ignore[index]
        else:
            nxt = target.get(part)
            if nxt is None:
                nxt = target[part] = {}
        if not isinstance(nxt, dict | list):
            prefix = dotted(path[: depth + 1])
            raise SpecError.single(where, f"{prefix} is a value, not a section", dotted(path))
        target = nxt
    last = path[-1]
    if isinstance(target, list):
        _check_index(target, last, path, where)
    target[last] = value


def _check_index(items: list[Any], part: str | int, path: FieldPath, where: str) -> None:
    if not isinstance(part, int):
        raise SpecError.single(
            where, f"{dotted(path[:-1])} is a list: address its items by index", dotted(path)
        )
    if part >= len(items):
        raise SpecError.single(
            where, f"index {part} is outside the list ({len(items)} items)", dotted(path)
        )
