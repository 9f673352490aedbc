"""Problems found while reading a catalog file: located, explained, never fatal to the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Severity", "ValidationIssue"]

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
