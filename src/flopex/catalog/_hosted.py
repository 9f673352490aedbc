"""Hosted, token-priced offers: per-token prices from the `genai-prices` package, speeds from flopex's table."""

from __future__ import annotations

from datetime import date
from typing import Any

import genai_prices
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from flopex.catalog._issues import ValidationIssue

__all__ = ["HostedOffer", "HostedSpec", "price_hosted"]


class HostedSpec(BaseModel):
    """A row of the hosted table: which provider model serves a flopex model, and its published speed and
    first-token latency (each null where none is published; a figure comes with its source and date)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = Field(min_length=1)
    price_provider: str = Field(min_length=1, description="provider id in genai-prices")
    price_model: str = Field(min_length=1, description="model name in genai-prices")
    model: str = Field(min_length=1, description="flopex model id")
    output_tokens_per_s_per_user: PositiveFloat | None = None
    speed_source: str | None = None
    speed_as_of: date | None = None
    ttft_s: PositiveFloat | None = Field(
        None, description="published time to first token, seconds (the highest percentile the source gives)"
    )
    ttft_source: str | None = None
    ttft_as_of: date | None = None

    @model_validator(mode="after")
    def _ttft_sourced(self) -> HostedSpec:
        if self.ttft_s is not None and (not self.ttft_source or self.ttft_as_of is None):
            raise ValueError("ttft_s needs ttft_source and ttft_as_of (where and when it was published)")
        return self


class HostedOffer(BaseModel):
    """A model served by a hosted API, priced per token."""

    model_config = ConfigDict(frozen=True)

    id: str
    provider: str
    model: str
    provider_model: str
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    output_tokens_per_s_per_user: float | None
    price_source: str
    speed_source: str | None
    speed_as_of: date | None
    ttft_s: float | None = None  # published time to first token; None where none is published
    ttft_source: str | None = None
    ttft_as_of: date | None = None


def _per_million(usage: genai_prices.Usage, spec: HostedSpec) -> float:
    result: Any = genai_prices.calc_price(usage, spec.price_model, provider_id=spec.price_provider)
    return float(result.total_price)


def price_hosted(specs: list[tuple[HostedSpec, int]], file: str) -> tuple[list[HostedOffer], list[ValidationIssue]]:
    """Price every (spec, line) with genai-prices; a model it does not know becomes a located issue."""
    offers: list[HostedOffer] = []
    issues: list[ValidationIssue] = []
    source = f"genai-prices {genai_prices.__version__} (pydantic/genai-prices, MIT)"
    for spec, line in specs:
        try:
            input_price = _per_million(genai_prices.Usage(input_tokens=1_000_000, output_tokens=0), spec)
            output_price = _per_million(genai_prices.Usage(input_tokens=0, output_tokens=1_000_000), spec)
        except LookupError as exc:
            issues.append(ValidationIssue(file, line, "price_model", f"genai-prices has no price: {exc}."))
            continue
        offers.append(
            HostedOffer(
                id=f"{spec.provider}/{spec.model}".lower(),
                provider=spec.provider,
                model=spec.model,
                provider_model=spec.price_model,
                input_usd_per_mtok=input_price,
                output_usd_per_mtok=output_price,
                output_tokens_per_s_per_user=spec.output_tokens_per_s_per_user,
                price_source=f"{source}: {spec.price_provider}/{spec.price_model}",
                speed_source=spec.speed_source,
                speed_as_of=spec.speed_as_of,
                ttft_s=spec.ttft_s,
                ttft_source=spec.ttft_source,
                ttft_as_of=spec.ttft_as_of,
            )
        )
    return offers, issues
