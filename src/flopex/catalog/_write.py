"""Writing offers and regions in flopex's own CSV schema (what overlays and imports produce)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from flopex.catalog._offers import OFFER_COLUMNS, Offer
from flopex.catalog._regions import Region

__all__ = ["write_offers_csv", "write_regions_csv"]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def write_offers_csv(offers: Iterable[Offer], path: Path) -> int:
    """Write offers to `path` (replacing it); returns how many rows were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(OFFER_COLUMNS)
        for offer in offers:
            data = offer.model_dump()
            writer.writerow([_cell(data[c]) for c in OFFER_COLUMNS])
            n += 1
    return n


def write_regions_csv(regions: Iterable[Region], path: Path) -> int:
    columns = list(Region.model_fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for region in regions:
            data = region.model_dump()
            writer.writerow([_cell(data[c]) for c in columns])
            n += 1
    return n
