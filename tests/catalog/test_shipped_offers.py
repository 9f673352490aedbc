from __future__ import annotations

from collections import defaultdict

from flopex.catalog import Catalog

NAMED_PROVIDERS = {"aws", "gcp", "azure", "oci", "lambda", "runpod", "nebius", "coreweave"}


def test_shipped_catalog_loads_without_issues(catalog: Catalog) -> None:
    assert [str(i) for i in catalog.issues] == []


def test_snapshot_breadth(catalog: Catalog) -> None:
    assert len(catalog.offers) >= 60
    assert NAMED_PROVIDERS <= {o.provider for o in catalog.offers}
    assert len({(o.provider, o.region) for o in catalog.offers}) >= 15
    accs = {o.accelerator for o in catalog.offers}
    wanted = {
        "H100-SXM",
        "H200-SXM",
        "B200",
        "A100-SXM-80GB",
        "L4",
        "L40S",
        "MI300X",
        "TPU-V5E",
        "TPU-V5P",
        "TPU-V6E",
        "TRAINIUM1",
        "TRAINIUM2",
        "INFERENTIA2",
    }
    assert wanted <= accs


def test_every_offer_is_sourced_and_in_a_known_region(catalog: Catalog) -> None:
    for offer in catalog.offers:
        assert offer.source.strip() and offer.as_of.year >= 2026
        assert catalog.regions.find(offer.provider, offer.region) is not None, offer.id
        assert offer.price_usd_per_hour > 0


def test_spot_is_cheaper_than_on_demand_for_the_same_instance(catalog: Catalog) -> None:
    prices: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for o in catalog.offers:
        prices[(o.provider, o.region, o.instance_type)][o.market] = o.price_usd_per_hour
    pairs = [p for p in prices.values() if {"spot", "on_demand"} <= set(p)]
    assert len(pairs) >= 10
    for p in pairs:
        assert p["spot"] < p["on_demand"]


def test_ids_are_unique_and_stable(catalog: Catalog) -> None:
    ids = [o.id for o in catalog.offers]
    assert len(ids) == len(set(ids))
    assert "aws/us-east-1/p5.48xlarge/on_demand" in ids
