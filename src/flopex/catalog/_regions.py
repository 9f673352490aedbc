"""Regions: where an offer runs, which jurisdictions it falls under, its grid carbon and PUE."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flopex.errors import UnknownRegionError, did_you_mean

__all__ = ["Country", "GridIntensity", "Region", "RegionTable"]


class Country(BaseModel):
    """A country's jurisdiction tags and, where known, its mean grid intensity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    country: str
    name: str
    jurisdictions: tuple[str, ...] = ()
    grid_gco2e_per_kwh: float | None = Field(default=None, ge=0)
    ci_dataset: str | None = None
    ci_year: int | None = None
    ci_source: str | None = None


class Region(BaseModel):
    """A provider's region (or a private site): location, country, grid intensity and PUE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = Field(min_length=1)
    region: str = Field(min_length=1)
    location: str | None = None
    country: str | None = None
    grid_gco2e_per_kwh: float | None = Field(default=None, ge=0)
    ci_dataset: str | None = None
    ci_year: int | None = None
    ci_source: str | None = None
    pue: float = Field(default=1.56, ge=1.0, le=3.0)
    pue_source: str = "Uptime Institute 2024 global survey average (no figure given)"
    as_of: date | None = None


@dataclass(frozen=True)
class GridIntensity:
    """Location-based grid carbon intensity and where the number came from."""

    gco2e_per_kwh: float
    dataset: str
    year: int | None
    basis: Literal["region", "country", "world"]
    note: str


class RegionTable:
    """Regions by (provider, region), matched case-insensitively, with country and world fallbacks."""

    def __init__(self, regions: Iterable[Region], countries: Iterable[Country]) -> None:
        self._regions = {(r.provider.lower(), r.region.lower()): r for r in regions}
        self._providers = {provider for provider, _ in self._regions}
        self._countries = {c.country.upper(): c for c in countries}
        if "WORLD" not in self._countries:
            raise ValueError("the country table needs a WORLD row (the last-resort grid intensity)")

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions.values())

    def __len__(self) -> int:
        return len(self._regions)

    def with_regions(self, regions: Iterable[Region]) -> RegionTable:
        """A new table with `regions` added (replacing any with the same provider and name)."""
        return RegionTable([*self._regions.values(), *regions], self._countries.values())

    @property
    def providers(self) -> list[str]:
        return sorted({r.provider for r in self._regions.values()})

    def has_provider(self, provider: str) -> bool:
        return provider.lower() in self._providers

    def find(self, provider: str, region: str) -> Region | None:
        return self._regions.get((provider.lower(), region.lower()))

    def resolve(self, provider: str, region: str) -> Region:
        found = self.find(provider, region)
        if found is None:
            raise UnknownRegionError(self.unknown_message(provider, region))
        return found

    def unknown_message(self, provider: str, region: str) -> str:
        known = [r.region for r in self._regions.values() if r.provider.lower() == provider.lower()]
        if not self.has_provider(provider):
            hint = did_you_mean(provider, self.providers)
            return (
                f"unknown provider {provider!r}.{hint} To fix: use a known provider, or declare the provider's "
                "regions in an overlay (a regions CSV with provider,region,country columns, or a `regions:` list)."
            )
        hint = did_you_mean(region, known)
        return (
            f"unknown region {region!r} for provider {provider!r}.{hint} "
            f"To fix: use one of {', '.join(sorted(known)[:12])}{' ...' if len(known) > 12 else ''}, "
            "or declare the region in an overlay."
        )

    def country(self, code: str | None) -> Country | None:
        return None if code is None else self._countries.get(code.upper())

    def jurisdictions(self, region: Region) -> tuple[str, ...]:
        country = self.country(region.country)
        if country is not None:
            return country.jurisdictions
        return (region.country.upper(),) if region.country else ()

    def grid(self, region: Region) -> GridIntensity:
        """The region's own intensity, else its country's mean, else the world mean, saying which."""
        if region.grid_gco2e_per_kwh is not None:
            return GridIntensity(
                region.grid_gco2e_per_kwh, region.ci_dataset or "user supplied", region.ci_year, "region", ""
            )
        country = self.country(region.country)
        if country is not None and country.grid_gco2e_per_kwh is not None:
            return GridIntensity(
                country.grid_gco2e_per_kwh,
                country.ci_dataset or "",
                country.ci_year,
                "country",
                f"no figure for region {region.region}; using the mean of {country.name}",
            )
        world = self._countries["WORLD"]
        assert world.grid_gco2e_per_kwh is not None
        why = f"no figure for region {region.region} or its country {region.country or '(unknown)'}"
        return GridIntensity(
            world.grid_gco2e_per_kwh, world.ci_dataset or "", world.ci_year, "world", f"{why}; using the world mean"
        )
