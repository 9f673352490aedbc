"""Which instance shapes can serve a workload: for each offer its constraints allow and each precision the chip
can run, the fewest instances (as one group) that hold the model. Quotes rank these; the planner chooses
among them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from flopex.catalog import Accelerator, Catalog, Offer, OfferQuery, Precision, select_offers
from flopex.errors import DoesNotFitError, EconomicsError, FlopexError
from flopex.workloads import Workload

__all__ = ["GROUP_SIZES", "Shape", "offer_shapes", "usable_precisions", "workload_offers"]

GROUP_SIZES = (1, 2, 4, 8)  # instances that may form one group (one model replica set) when one is too small

_T = TypeVar("_T")


@dataclass(frozen=True)
class Shape(Generic[_T]):
    """One precision on one offer: `fit` on `group` instances, or the `error` that rules it out, or neither
    when the model does not fit on the largest group."""

    offer: Offer
    accelerator: Accelerator
    precision: Precision
    group: int = 0
    fit: _T | None = None
    error: FlopexError | None = None


def workload_offers(w: Workload, catalog: Catalog) -> list[Offer]:
    """The offers the workload's constraints allow."""
    c = w.constraints
    query = OfferQuery(providers=c.providers, markets=c.markets, jurisdictions=c.jurisdictions, regions=c.regions)
    try:
        return select_offers(catalog.offers, catalog.accelerators, catalog.regions, query)
    except FlopexError as exc:
        raise EconomicsError(f"workload {w.name}: constraints: {exc}") from None


def usable_precisions(w: Workload, acc: Accelerator) -> list[Precision]:
    """The workload's precisions the accelerator runs natively (int4 is weight-only and runs anywhere)."""
    return [p for p in w.precisions if p == "int4" or acc.runs(p)]


def offer_shapes(
    w: Workload,
    catalog: Catalog,
    evaluate: Callable[[Accelerator, int, int, Precision], _T],
    groups: tuple[int, ...] = GROUP_SIZES,
) -> Iterator[tuple[Offer, list[Shape[_T]]]]:
    """Each allowed offer with one shape per usable precision. `evaluate(accelerator, per_instance, group,
    precision)` raises DoesNotFitError when the model does not fit; it depends only on the instance shape, so it
    runs once per shape. Instances of one group share no scale-up fabric: tensor (or sequence) parallelism stays
    inside an instance, and a group of several instances is pipeline stages over the network."""
    cache: dict[tuple[str, int, int, str], _T | FlopexError] = {}
    for offer in workload_offers(w, catalog):
        acc = catalog.accelerators[offer.accelerator]
        shapes: list[Shape[_T]] = []
        for precision in usable_precisions(w, acc):
            shape = Shape[_T](offer, acc, precision)
            for group in groups:
                key = (acc.id, offer.accelerator_count, group, precision)
                if key not in cache:
                    try:
                        cache[key] = evaluate(acc, offer.accelerator_count, group, precision)
                    except FlopexError as exc:
                        cache[key] = exc
                result = cache[key]
                if isinstance(result, DoesNotFitError):
                    continue
                if isinstance(result, FlopexError):
                    shape = Shape[_T](offer, acc, precision, error=result)
                else:
                    shape = Shape(offer, acc, precision, group, result)
                break
            shapes.append(shape)
        yield offer, shapes
