from __future__ import annotations

import csv

import pytest

from flopex.catalog import Catalog
from tests.conftest import SHARED


def test_gcp_regions_match_googles_published_2024_figures(catalog: Catalog) -> None:
    source = SHARED / "data" / "carbon" / "google-region-carbon-2024.csv"
    if not source.exists():
        pytest.skip(f"{source} is absent: the shared reference data is not checked out beside the project")
    rows = list(csv.DictReader(source.read_text(encoding="utf-8").splitlines()))
    assert rows
    for row in rows:
        region = catalog.regions.resolve("gcp", row["Google Cloud Region"])
        grid = catalog.regions.grid(region)
        assert grid.basis == "region"
        assert grid.gco2e_per_kwh == pytest.approx(float(row["Grid carbon intensity (gCO2eq / kWh)"]))
        assert grid.year == 2024


def test_region_without_data_falls_back_to_its_country(catalog: Catalog) -> None:
    grid = catalog.regions.grid(catalog.regions.resolve("lambda", "us-east-1"))
    assert grid.basis == "country" and grid.gco2e_per_kwh == 369 and "United States" in grid.note


def test_region_without_country_data_falls_back_to_the_world_mean(catalog: Catalog) -> None:
    grid = catalog.regions.grid(catalog.regions.resolve("runpod", "eu-ro-1"))
    assert grid.basis == "world" and grid.gco2e_per_kwh == 475 and "world mean" in grid.note


@pytest.mark.parametrize(
    ("provider", "region", "tag"),
    [
        ("gcp", "europe-west4", "EU"),
        ("gcp", "europe-west4", "NL"),
        ("aws", "eu-west-2", "UK"),
        ("gcp", "asia-northeast1", "JP"),
        ("aws", "ap-southeast-1", "SG"),
        ("gcp", "asia-south1", "IN"),
        ("aws", "us-east-1", "US"),
    ],
)
def test_jurisdiction_tags(catalog: Catalog, provider: str, region: str, tag: str) -> None:
    assert tag in catalog.regions.jurisdictions(catalog.regions.resolve(provider, region))


def test_uk_is_not_eu(catalog: Catalog) -> None:
    assert "EU" not in catalog.regions.jurisdictions(catalog.regions.resolve("aws", "eu-west-2"))


def test_every_region_has_a_pue_with_a_source(catalog: Catalog) -> None:
    for region in catalog.regions:
        assert 1.0 <= region.pue <= 2.0 and region.pue_source
