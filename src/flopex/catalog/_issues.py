"""Problems found while reading a catalog file: located, explained, never fatal to the rest."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from flopex.errors import did_you_mean

__all__ = ["Severity", "ValidationIssue", "issues_from_validation"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in one place. An `error` drops the row; a `warning` keeps it."""

    file: str
    line: int | None
    field: str | None
    message: str
    severity: Severity = "error"

    @property
    def where(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        return place if self.field is None else f"{place} [{self.field}]"

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.message}"


def issues_from_validation(
    exc: ValidationError,
    *,
    file: str,
    line: int,
    values: Mapping[str, Any],
    field_lines: Mapping[str, int],
    known_fields: Sequence[str],
    choices: Mapping[str, Sequence[str]] | None = None,
    hints: Mapping[str, str] | None = None,
    derived: Collection[str] = (),
) -> list[ValidationIssue]:
    """One located issue per pydantic error: what is wrong, the value given, the closest choice, how to fix it.

    `derived` names fields computed from others, whose absence is reported through those others.
    """
    issues = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else None
        kind = err["type"]
        if field in derived and kind == "missing":
            continue
        got = values.get(field) if field else None
        options = (choices or {}).get(field or "")
        if kind == "missing":
            msg = "is missing."
        elif kind == "extra_forbidden":
            msg = f"is not a known field.{did_you_mean(field or '', known_fields)}"
        elif kind == "literal_error" and options:
            msg = f"{got!r} is not valid.{did_you_mean(str(got), options)} Choose from: {', '.join(options)}."
        else:
            msg = f"{err['msg'].rstrip('.')} (got {got!r})."
        hint = (hints or {}).get(field or "")
        if hint and kind not in ("extra_forbidden", "literal_error"):
            msg += f" To fix: {hint}."
        issues.append(ValidationIssue(file, field_lines.get(field or "", line), field, msg))
    return issues
