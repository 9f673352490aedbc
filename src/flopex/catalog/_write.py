"""Writing offers and regions in flopex's own CSV schema (what overlays and imports produce)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel

from flopex.catalog._offers import OFFER_COLUMNS, Offer
from flopex.catalog._regions import Region

__all__ = ["write_offers_csv", "write_regions_csv"]


def _write(rows: Iterable[BaseModel], columns: Sequence[str], path: Path) -> int:
    """Write `columns` of each row to `path` (replacing it); returns how many rows were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            data = row.model_dump()
            writer.writerow(["" if data[c] is None else str(data[c]) for c in columns])
            n += 1
    return n


def write_offers_csv(offers: Iterable[Offer], path: Path) -> int:
    return _write(offers, OFFER_COLUMNS, path)


def write_regions_csv(regions: Iterable[Region], path: Path) -> int:
    return _write(regions, list(Region.model_fields), path)
