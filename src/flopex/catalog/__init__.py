"""The catalog: accelerators, offers, regions and hosted token-priced offers, with their provenance."""

from __future__ import annotations

from flopex.catalog._accelerators import PRECISIONS, Accelerator, AcceleratorTable, Precision
from flopex.catalog._hosted import HostedOffer
from flopex.catalog._issues import ValidationIssue
from flopex.catalog._load import Catalog, OfferOrigin, load_accelerators, load_catalog, overlay_files, read_overlay
from flopex.catalog._offers import MARKETS, OFFER_COLUMNS, Market, Offer, offer_id, parse_offer
from flopex.catalog._owned import OwnedCost, OwnedServer, owned_cost
from flopex.catalog._query import SORT_KEYS, OfferQuery, SortKey, select_offers, sort_value
from flopex.catalog._regions import Country, GridIntensity, Region, RegionTable
from flopex.catalog._skypilot import Dropped, SkyPilotImport, import_skypilot
from flopex.catalog._write import write_offers_csv, write_regions_csv

__all__ = [
    "MARKETS",
    "OFFER_COLUMNS",
    "PRECISIONS",
    "SORT_KEYS",
    "Accelerator",
    "AcceleratorTable",
    "Catalog",
    "Country",
    "Dropped",
    "GridIntensity",
    "HostedOffer",
    "Market",
    "Offer",
    "OfferOrigin",
    "OfferQuery",
    "OwnedCost",
    "OwnedServer",
    "Precision",
    "Region",
    "RegionTable",
    "SkyPilotImport",
    "SortKey",
    "ValidationIssue",
    "import_skypilot",
    "load_accelerators",
    "load_catalog",
    "offer_id",
    "overlay_files",
    "owned_cost",
    "parse_offer",
    "read_overlay",
    "select_offers",
    "sort_value",
    "write_offers_csv",
    "write_regions_csv",
]
