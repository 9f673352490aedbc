"""Owned servers: the hourly cost of hardware a user bought, derived from its price, life and power."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from flopex.catalog._accelerators import Accelerator
from flopex.catalog._offers import Offer, offer_id

__all__ = ["HOURS_PER_YEAR", "HOST_POWER_SHARE", "OwnedCost", "OwnedServer", "owned_cost", "owned_offer"]

HOURS_PER_YEAR = 8760.0
# Host (CPU, DRAM, NICs, fans) power as a share of the accelerators' TDP when the user gives none. The AI Energy
# Score methodology (huggingface.github.io/AIEnergyScore) puts CPU and RAM at roughly 30% on top of GPU energy.
HOST_POWER_SHARE = 0.30


class OwnedServer(BaseModel):
    """A server model the user owns, as written in an overlay's `owned:` list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="instance type name, e.g. dc1-hgx-h100")
    provider: str = Field(default="owned", min_length=1)
    region: str = Field(min_length=1, description="site name; declared on the fly when new")
    country: str | None = Field(
        default=None, description="ISO 3166 alpha-2 code of the site, for carbon and jurisdiction"
    )
    accelerator: str
    accelerator_count: PositiveInt
    servers: PositiveInt = Field(description="how many such servers exist (the offer's capacity)")
    purchase_usd: PositiveFloat = Field(description="purchase price of one server, all in")
    amortisation_years: PositiveFloat = Field(le=15)
    power_usd_per_kwh: float = Field(ge=0, le=5)
    pue: float = Field(ge=1.0, le=3.0)
    average_load: float = Field(default=1.0, ge=0.0, le=1.0, description="accelerator activity, 0 idle to 1 at TDP")
    server_power_kw: PositiveFloat | None = Field(default=None, description="measured server draw at that load")
    ops_overhead_pct: float = Field(default=0.0, ge=0.0, le=500.0)
    vcpus: PositiveInt | None = None
    memory_gib: PositiveFloat | None = None
    source: str = "user overlay"
    as_of: date | None = None


class OwnedCost(BaseModel):
    model_config = ConfigDict(frozen=True)

    capital_usd_per_hour: float
    power_kw: float
    energy_usd_per_hour: float
    ops_usd_per_hour: float

    @property
    def total_usd_per_hour(self) -> float:
        return self.capital_usd_per_hour + self.energy_usd_per_hour + self.ops_usd_per_hour


def owned_cost(server: OwnedServer, accelerator: Accelerator) -> OwnedCost:
    """Amortised capital plus facility energy at the given load, plus an optional operations overhead.

    Raises ValueError when neither the server's power nor the accelerator's TDP is known.
    """
    if server.server_power_kw is not None:
        power_kw = server.server_power_kw
    else:
        if accelerator.tdp_w is None:
            raise ValueError(
                f"{accelerator.id} has no published TDP, so flopex cannot estimate the server's power. "
                "To fix: give server_power_kw (the measured draw of one server)."
            )
        idle = accelerator.idle_w if accelerator.idle_w is not None else 0.0
        per_chip = idle + (accelerator.tdp_w - idle) * server.average_load
        host = HOST_POWER_SHARE * accelerator.tdp_w * server.accelerator_count
        power_kw = (per_chip * server.accelerator_count + host) / 1000.0
    capital = server.purchase_usd / (server.amortisation_years * HOURS_PER_YEAR)
    energy = power_kw * server.pue * server.power_usd_per_kwh
    ops = (capital + energy) * server.ops_overhead_pct / 100.0
    return OwnedCost(capital_usd_per_hour=capital, power_kw=power_kw, energy_usd_per_hour=energy, ops_usd_per_hour=ops)


def owned_offer(server: OwnedServer, accelerator: Accelerator, source: str, as_of: date) -> Offer:
    cost = owned_cost(server, accelerator)
    derivation = (
        f"derived: capital ${cost.capital_usd_per_hour:.4f}/h (${server.purchase_usd:,.0f} over "
        f"{server.amortisation_years:g} years) + energy ${cost.energy_usd_per_hour:.4f}/h "
        f"({cost.power_kw:.3f} kW at load {server.average_load:g} x PUE {server.pue:g} x "
        f"${server.power_usd_per_kwh:g}/kWh) + operations {server.ops_overhead_pct:g}% "
        f"(${cost.ops_usd_per_hour:.4f}/h) = ${cost.total_usd_per_hour:.4f}/h"
    )
    return Offer(
        id=offer_id(server.provider, server.region, None, server.name, "owned"),
        provider=server.provider,
        region=server.region,
        instance_type=server.name,
        accelerator=accelerator.id,
        accelerator_count=server.accelerator_count,
        vcpus=server.vcpus,
        memory_gib=server.memory_gib,
        market="owned",
        price_usd_per_hour=cost.total_usd_per_hour,
        capacity=server.servers,
        source=source,
        as_of=server.as_of or as_of,
        derivation=derivation,
    )
