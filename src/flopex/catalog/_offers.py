"""Offers (something a user can buy by the hour) and the checks a row must pass to become one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from flopex.catalog._accelerators import Accelerator, AcceleratorTable
from flopex.catalog._issues import ValidationIssue, issues_from_validation
from flopex.catalog._regions import RegionTable
from flopex.errors import did_you_mean

__all__ = [
    "MARKETS",
    "OFFER_COLUMNS",
    "REQUIRED_COLUMNS",
    "Market",
    "Offer",
    "offer_id",
    "parse_offer",
]

Market = Literal["on_demand", "spot", "reserved_1y", "reserved_3y", "owned"]
MARKETS: tuple[str, ...] = get_args(Market)

OFFER_COLUMNS: tuple[str, ...] = (
    "id",
    "provider",
    "region",
    "zone",
    "instance_type",
    "accelerator",
    "accelerator_count",
    "vcpus",
    "memory_gib",
    "market",
    "price_usd_per_hour",
    "capacity",
    "interruption_rate",
    "source",
    "as_of",
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "provider",
    "region",
    "instance_type",
    "accelerator",
    "accelerator_count",
    "market",
    "price_usd_per_hour",
    "source",
    "as_of",
)

_HINTS = {
    "price_usd_per_hour": "give the USD price of one instance for one hour, e.g. 3.29",
    "accelerator_count": "give the whole number of accelerators in one instance, e.g. 8",
    "vcpus": "give a whole number of vCPUs, or leave the cell empty",
    "memory_gib": "give host memory in GiB, or leave the cell empty",
    "capacity": "give how many instances can be had (a whole number), or leave the cell empty",
    "interruption_rate": "give the chance an instance is interrupted in a given hour, between 0 and 1",
    "as_of": "give the date the price was observed as YYYY-MM-DD",
    "source": "say where the price comes from (a URL or a document)",
}


class Offer(BaseModel):
    """An instance type sold by the hour in one region and market, at one price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    region: str = Field(min_length=1)
    zone: str | None = None
    instance_type: str = Field(min_length=1)
    accelerator: str
    accelerator_count: PositiveInt
    vcpus: PositiveInt | None = None
    memory_gib: PositiveFloat | None = None
    market: Market
    price_usd_per_hour: PositiveFloat
    capacity: PositiveInt | None = None
    interruption_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    source: str = Field(min_length=1)
    as_of: date
    derivation: str | None = None

    @property
    def price_per_accelerator_hour(self) -> float:
        return self.price_usd_per_hour / self.accelerator_count


def offer_id(provider: str, region: str, zone: str | None, instance_type: str, market: str) -> str:
    """The stable id of an offer: provider/region[/zone]/instance_type/market, lower case."""
    parts = [provider, region, *([zone] if zone else []), instance_type, market]
    return "/".join(re.sub(r"\s+", "-", p.strip().lower()) for p in parts)


def _check_links(
    values: dict[str, Any], accelerators: AcceleratorTable, regions: RegionTable
) -> tuple[dict[str, str], Accelerator | None]:
    """Field -> problem for the accelerator and region references; and the accelerator when it resolves."""
    problems: dict[str, str] = {}
    acc: Accelerator | None = None
    name = values.get("accelerator")
    if isinstance(name, str) and name:
        acc = accelerators.find(name)
        if acc is None:
            problems["accelerator"] = accelerators.unknown_message(name)
    provider, region = values.get("provider"), values.get("region")
    if isinstance(provider, str) and isinstance(region, str) and regions.find(provider, region) is None:
        field = "region" if regions.has_provider(provider) else "provider"
        problems[field] = regions.unknown_message(provider, region)
    return problems, acc


def parse_offer(
    raw: Mapping[str, Any],
    *,
    file: str,
    line: int,
    field_lines: Mapping[str, int] | None = None,
    accelerators: AcceleratorTable,
    regions: RegionTable,
) -> Offer | list[ValidationIssue]:
    """An `Offer` from one row, or every problem with the row (all of them, not only the first)."""
    lines = field_lines or {}
    values = {k: v for k, v in raw.items() if v is not None and k in OFFER_COLUMNS}
    extra = [k for k in raw if k not in OFFER_COLUMNS]
    issues = [
        ValidationIssue(file, lines.get(k, line), k, f"is not a known field.{did_you_mean(k, OFFER_COLUMNS)}")
        for k in extra
    ]
    problems, acc = _check_links(values, accelerators, regions)
    issues += [ValidationIssue(file, lines.get(f, line), f, msg) for f, msg in problems.items()]
    if acc is not None:
        values["accelerator"] = acc.id
    if isinstance(values.get("provider"), str) and isinstance(values.get("region"), str):
        known = regions.find(values["provider"], values["region"])
        if known is not None:
            values["provider"], values["region"] = known.provider, known.region
    if values.get("interruption_rate") is not None and values.get("market") not in (None, "spot"):
        issues.append(
            ValidationIssue(
                file,
                lines.get("interruption_rate", line),
                "interruption_rate",
                "applies only to the spot market. To fix: leave it empty or set market to spot.",
            )
        )
    if not values.get("id"):
        parts = [values.get(k) for k in ("provider", "region", "instance_type", "market")]
        if all(isinstance(p, str) for p in parts):
            values["id"] = offer_id(str(parts[0]), str(parts[1]), values.get("zone"), str(parts[2]), str(parts[3]))
    try:
        offer = Offer.model_validate(values)
    except ValidationError as exc:
        issues += issues_from_validation(
            exc,
            file=file,
            line=line,
            values=raw,
            field_lines=lines,
            known_fields=OFFER_COLUMNS,
            choices={"market": MARKETS},
            hints=_HINTS,
            derived={"id"},
        )
        return issues
    return issues or offer
