"""Selecting and ranking offers: pure functions over a loaded catalog."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from flopex.catalog._accelerators import AcceleratorTable
from flopex.catalog._offers import Offer
from flopex.catalog._regions import RegionTable

__all__ = ["SORT_KEYS", "OfferQuery", "SortKey", "select_offers", "sort_value"]

SortKey = Literal["price", "price-per-accelerator", "price-per-tflops", "price-per-tb-s"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)


@dataclass(frozen=True)
class OfferQuery:
    """Filters (all optional, combined with AND; values case-insensitive) and an order."""

    accelerators: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    markets: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    min_memory_gb: float | None = None
    sort: SortKey = "price-per-accelerator"
    limit: int | None = None


def sort_value(offer: Offer, key: SortKey, accelerators: AcceleratorTable) -> float:
    """USD per instance-hour, per accelerator-hour, per dense 16-bit TFLOPS-hour or per TB/s-hour."""
    acc = accelerators[offer.accelerator]
    per_acc = offer.price_per_accelerator_hour
    table: dict[SortKey, Callable[[], float]] = {
        "price": lambda: offer.price_usd_per_hour,
        "price-per-accelerator": lambda: per_acc,
        "price-per-tflops": lambda: per_acc / acc.peak_tflops,
        "price-per-tb-s": lambda: per_acc / acc.memory_bandwidth_tb_s,
    }
    return table[key]()


def select_offers(
    offers: tuple[Offer, ...], accelerators: AcceleratorTable, regions: RegionTable, query: OfferQuery
) -> list[Offer]:
    """The offers that pass every filter, cheapest first by the chosen key (ties broken by id)."""
    wanted_acc = {accelerators.resolve(a).id for a in query.accelerators}
    providers = {p.lower() for p in query.providers}
    markets = {m.lower() for m in query.markets}
    jurisdictions = {j.upper() for j in query.jurisdictions}
    wanted_regions = {r.lower() for r in query.regions}

    def keep(offer: Offer) -> bool:
        region = regions.resolve(offer.provider, offer.region)
        acc = accelerators[offer.accelerator]
        return (
            (not wanted_acc or offer.accelerator in wanted_acc)
            and (not providers or offer.provider.lower() in providers)
            and (not markets or offer.market in markets)
            and (not jurisdictions or bool(jurisdictions & set(regions.jurisdictions(region))))
            and (not wanted_regions or offer.region.lower() in wanted_regions)
            and (query.min_memory_gb is None or acc.memory_gb * offer.accelerator_count >= query.min_memory_gb)
        )

    chosen = sorted((o for o in offers if keep(o)), key=lambda o: (sort_value(o, query.sort, accelerators), o.id))
    return chosen if query.limit is None else chosen[: query.limit]
