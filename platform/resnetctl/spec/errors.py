"""Errors of a job spec, each pointing at the file, line and field at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem: where it is (`file:line` or `--set key=value`), which field, and what."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [self.where]
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class SpecError(ValueError):
    """A job spec that cannot be used; `issues` lists every problem found."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @classmethod
    def single(cls, where: str, message: str, field: str = "") -> SpecError:
        """An error with one issue."""
        return cls([SpecIssue(where, field, message)])
