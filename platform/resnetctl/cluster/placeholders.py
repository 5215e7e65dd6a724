"""Per-site values the shipped configs leave for the user to fill in, marked `REPLACE...`:
`validate` warns about them, `up` refuses to start a cluster that still has them."""

from __future__ import annotations

from typing import Any

from resnetctl.cluster.config import ConfigIssue, FieldPath, dotted, issue_at

PLACEHOLDER = "REPLACE"


def placeholders(value: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Fields whose value still says REPLACE (the shipped configs mark per-site values so)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholders(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholders(v, (*path, i))]
    return [path] if isinstance(value, str) and PLACEHOLDER in value else []


def placeholder_issues(
    name: str, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> list[ConfigIssue]:
    """A warning naming the placeholders left in the config at `name`, if any."""
    marked = placeholders(raw)
    if not marked:
        return []
    others = f" (and {', '.join(dotted(p) for p in marked[1:])})" if len(marked) > 1 else ""
    return [
        issue_at(
            name,
            lines,
            marked[0],
            f"still a placeholder{others}: fill in before `resnetctl cluster up`",
            "warning",
        )
    ]
