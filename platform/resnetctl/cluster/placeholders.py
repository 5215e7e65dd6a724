"""Per-site values the shipped configs leave for the user to fill in, marked `REPLACE...`: the
bucket the nodes keep runs in, the machine image, the project, the container image.
`validate` warns about each, `up` refuses to start a cluster that still has one; both say
where it is (file:line) and what to put there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnetctl.cluster.config import (
    ClusterConfig,
    ConfigIssue,
    FieldPath,
    dotted,
    issue_at,
    line_at,
)

PLACEHOLDER = "REPLACE"
# The bucket is named once per shipped config, in the nodes' RESNETCTL_STORAGE.
BUCKET_PLACEHOLDER = "REPLACE-ME-bucket"

# What to put in place of a placeholder, by a word of its text; the first match wins.
_HINTS = (
    (
        BUCKET_PLACEHOLDER,
        "your bucket and prefix for runs and checkpoints, e.g. {scheme}://my-team-resnet/runs, "
        "one {credentials} may read and write (docs/cluster.md, 'A bucket for runs and data')",
    ),
    ("AMI", "the Deep Learning Base GPU AMI id of your region (ami-...)"),
    ("PROJECT-ID", "your GCP project id"),
    ("REGISTRY", "the image with resnetctl that you pushed (REGISTRY/resnetctl:TAG)"),
)
_CREDENTIALS = {
    "aws": "the nodes' instance profiles",
    "gcp": "the nodes' service accounts",
    "kuberay": "the keys in the resnetctl-bucket Secret (or the pods' workload identity)",
}


@dataclass(frozen=True)
class Placeholder:
    """One placeholder text: where it is first written, its other lines, what to put there."""

    path: FieldPath
    value: str
    line: int | None
    other_lines: tuple[int, ...]
    hint: str

    def describe(self) -> str:
        """`still a placeholder (VALUE), where else it is written, and what to put there."""
        also = ""
        if self.other_lines:
            also = f" (also at line{'s' if len(self.other_lines) > 1 else ''} "
            also += ", ".join(map(str, self.other_lines)) + ")"
        return f"still a placeholder ({self.value}){also}: put {self.hint}"


def placeholders(value: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Fields whose value still says REPLACE (the shipped configs mark per-site values so)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in placeholders(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in placeholders(v, (*path, i))]
    return [path] if isinstance(value, str) and PLACEHOLDER in value else []


def find_placeholders(raw: dict[str, Any], lines: dict[FieldPath, int]) -> list[Placeholder]:
    """Every placeholder text in `raw`, the bucket first, then in file order.

    A value written once and reused through a YAML alias counts once, at the line it is
    written; the same text written on several lines (the AMI of each node type) is one
    placeholder whose `other_lines` list the rest.
    """
    by_value: dict[str, list[tuple[FieldPath, int | None]]] = {}
    for path in placeholders(raw):
        by_value.setdefault(str(_value_at(raw, path)), []).append((path, line_at(lines, path)))
    found = []
    for value, places in by_value.items():
        places.sort(key=lambda place: place[1] or 0)
        first_path, first_line = places[0]
        others = sorted({line for _, line in places if line and line != first_line})
        found.append(Placeholder(first_path, value, first_line, tuple(others), _hint(value, raw)))
    return sorted(found, key=lambda p: (BUCKET_PLACEHOLDER not in p.value, p.line or 0))


def placeholder_issues(
    name: str, raw: dict[str, Any], lines: dict[FieldPath, int]
) -> list[ConfigIssue]:
    """A warning for each placeholder left in the config at `name`."""
    return [
        issue_at(
            name, lines, p.path, f"{p.describe()}; `cluster up` refuses it until then", "warning"
        )
        for p in find_placeholders(raw, lines)
    ]


def unfilled(config: ClusterConfig) -> str | None:
    """Why `up` must not start this cluster yet: one line per placeholder, naming file:line,
    field and what to put there; None when every value is filled in."""
    found = find_placeholders(config.raw, config.lines)
    if not found:
        return None
    where = [
        f"  {config.path}:{p.line}: {dotted(p.path)}: {p.describe()}"
        if p.line
        else f"  {config.path}: {dotted(p.path)}: {p.describe()}"
        for p in found
    ]
    return f"{config.path} still has placeholders to fill in before it can start:\n" + "\n".join(
        where
    )


def _value_at(raw: Any, path: FieldPath) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _hint(value: str, raw: dict[str, Any]) -> str:
    kind = "kuberay" if "apiVersion" in raw or "kind" in raw else None
    provider = kind or str((raw.get("provider") or {}).get("type", ""))
    for word, hint in _HINTS:
        if word in value:
            return hint.format(
                scheme="gs" if provider == "gcp" else "s3",
                credentials=_CREDENTIALS.get(provider, "the nodes' credentials"),
            )
    return "the value the comment above it describes"
