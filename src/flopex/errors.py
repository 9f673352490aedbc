"""Errors raised by flopex.

Every message says what failed, how to fix it and, where there is one, the closest valid value.

    FlopexError
    ├── CatalogError
    │   ├── UnknownAcceleratorError
    │   ├── UnknownRegionError
    │   ├── UnknownOfferError
    │   └── CatalogFileError       (a file that cannot be read at all; row problems are ValidationIssues)
    ├── ImportFormatError          (a foreign catalog file flopex cannot import)
    ├── ModelError
    │   ├── UnknownModelError
    │   └── ModelConfigError       (a config.json flopex cannot turn into a ModelSpec)
    └── PerfError
        ├── UnsupportedPrecisionError  (the accelerator has no native unit for that precision)
        ├── DoesNotFitError        (the model does not fit; the message says what would)
        └── CalibrationError       (a calibration file or fit that cannot be used)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import ValidationError

__all__ = [
    "CatalogError",
    "CalibrationError",
    "CatalogFileError",
    "DoesNotFitError",
    "EconomicsError",
    "FlopexError",
    "GatewayError",
    "ImportFormatError",
    "LedgerError",
    "ModelConfigError",
    "ModelError",
    "PerfError",
    "PlanError",
    "SimError",
    "UnknownAcceleratorError",
    "UnknownModelError",
    "UnknownOfferError",
    "UnknownRegionError",
    "UnsupportedPrecisionError",
    "WorkloadError",
    "closest",
    "did_you_mean",
    "first_validation_error",
]


class FlopexError(Exception):
    """Base of every error flopex raises on purpose."""


class CatalogError(FlopexError):
    """Something about accelerators, offers or regions is wrong."""


class UnknownAcceleratorError(CatalogError):
    pass


class UnknownRegionError(CatalogError):
    pass


class UnknownOfferError(CatalogError):
    pass


class CatalogFileError(CatalogError):
    pass


class ImportFormatError(FlopexError):
    pass


class ModelError(FlopexError):
    """A model id or architecture file is wrong."""


class UnknownModelError(ModelError):
    pass


class ModelConfigError(ModelError):
    pass


class PerfError(FlopexError):
    """A prediction that cannot be made as asked."""


class UnsupportedPrecisionError(PerfError):
    pass


class DoesNotFitError(PerfError):
    pass


class CalibrationError(PerfError):
    pass


class WorkloadError(FlopexError):
    """A workload file is wrong: the message names the file, line and field."""


class PlanError(FlopexError):
    """A plan file, or the plan it asks for, is wrong or cannot be made."""


class SimError(FlopexError):
    """A simulation cannot be run as asked."""


class GatewayError(FlopexError):
    """A gateway or emulator configuration is wrong."""


class LedgerError(FlopexError):
    """Tenants, keys, budgets or usage records cannot be read or written as asked."""


class EconomicsError(FlopexError):
    """A quote, label or price sheet cannot be made as asked."""


def first_validation_error(exc: ValidationError) -> str:
    """'field.path: what is wrong (got VALUE)' for the first error pydantic reports."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "value"
    got = "" if err["type"] == "missing" else f" (got {err['input']!r})"
    return f"{field}: {err['msg'].rstrip('.')}{got}"


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates nearest to `word`, compared case-insensitively, best first."""
    pool = list(dict.fromkeys(candidates))
    by_lower = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.5)
    w = word.lower()
    contained = [c for c in pool if c.lower() not in hits and len(c) >= 3 and (w in c.lower() or c.lower() in w)]
    return (contained + [by_lower[h] for h in hits])[:n]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' Did you mean X or Y?' or an empty string when nothing is close."""
    near = closest(word, candidates)
    if not near:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in near) + "?"
