from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import SORT_KEYS, Catalog, OfferQuery, select_offers, sort_value


def test_sorted_cheapest_first_for_every_key(catalog: Catalog) -> None:
    for key in SORT_KEYS:
        chosen = select_offers(catalog.offers, catalog.accelerators, catalog.regions, OfferQuery(sort=key))  # type: ignore[arg-type]
        values = [sort_value(o, key, catalog.accelerators) for o in chosen]  # type: ignore[arg-type]
        assert values == sorted(values) and all(v > 0 for v in values)


def test_filters(catalog: Catalog) -> None:
    q = OfferQuery(accelerators=("h100",), jurisdictions=("eu",), markets=("on_demand",))
    chosen = select_offers(catalog.offers, catalog.accelerators, catalog.regions, q)
    assert chosen
    for o in chosen:
        assert o.accelerator == "H100-SXM" and o.market == "on_demand"
        assert "EU" in catalog.regions.jurisdictions(catalog.regions.resolve(o.provider, o.region))
    big = select_offers(catalog.offers, catalog.accelerators, catalog.regions, OfferQuery(min_memory_gb=1000))
    assert big and all(catalog.accelerators[o.accelerator].memory_gb * o.accelerator_count >= 1000 for o in big)


def test_h100_cheapest_per_accelerator_hour(catalog: Catalog) -> None:
    q = OfferQuery(accelerators=("H100-SXM",), markets=("on_demand",), limit=1)
    (best,) = select_offers(catalog.offers, catalog.accelerators, catalog.regions, q)
    every = [
        o.price_per_accelerator_hour for o in catalog.offers if o.accelerator == "H100-SXM" and o.market == "on_demand"
    ]
    assert best.price_per_accelerator_hour == min(every)


@settings(max_examples=50)
@given(data=st.data())
def test_more_offers_never_make_the_cheapest_dearer(catalog: Catalog, data: st.DataObject) -> None:
    offers = list(catalog.offers)
    subset = data.draw(st.lists(st.sampled_from(offers), min_size=1, unique_by=lambda o: o.id))
    extra = data.draw(st.lists(st.sampled_from(offers), unique_by=lambda o: o.id))
    superset = tuple({o.id: o for o in subset + extra}.values())
    q = OfferQuery(limit=1)
    small = select_offers(tuple(subset), catalog.accelerators, catalog.regions, q)[0]
    large = select_offers(superset, catalog.accelerators, catalog.regions, q)[0]
    assert large.price_per_accelerator_hour <= small.price_per_accelerator_hour
