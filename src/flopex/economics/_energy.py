"""Energy and carbon at an operating point: accelerator power from utilisation, the host's share, PUE, the
grid, and the hardware's embodied carbon."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flopex.catalog import Accelerator, GridIntensity, Region
from flopex.errors import EconomicsError
from flopex.perf import Factor

__all__ = ["EnergyTable", "Footprint", "GradeBands", "Unit", "footprint", "load_energy_table", "power_w"]

Unit = Literal["1k_output_tokens", "video_minute", "agent_hour", "run"]


class _Power(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    host_share_of_tdp: Factor
    uncertainty_pct: Factor
    training_activity: Factor


class _Embodied(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    life_years: Factor
    default_kg_per_accelerator: Factor
    kg_per_accelerator: dict[str, Factor] = {}


class GradeBands(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bounds: tuple[float, float, float, float, float, float]
    rationale: str = Field(min_length=1)

    def grade(self, value: float) -> str:
        """A for at most the first bound, ..., F for at most the last, G above it."""
        for letter, bound in zip("ABCDEF", self.bounds, strict=True):
            if value <= bound:
                return letter
        return "G"


class EnergyTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    power: _Power
    embodied: _Embodied
    grades: dict[Unit, GradeBands]

    def embodied_kg(self, acc: Accelerator) -> Factor:
        return self.embodied.kg_per_accelerator.get(acc.id) or self.embodied.default_kg_per_accelerator


@cache
def load_energy_table() -> EnergyTable:
    text = resources.files("flopex.data").joinpath("energy.yaml").read_text(encoding="utf-8")
    return EnergyTable.model_validate(yaml.safe_load(text))


def power_w(acc: Accelerator, activity: float, table: EnergyTable) -> tuple[float, float]:
    """(accelerator, host share) watts for one accelerator at `activity` (0 idle to 1 at TDP)."""
    if acc.tdp_w is None:
        raise EconomicsError(
            f"{acc.id} has no TDP in the catalog, so flopex cannot estimate its energy. To fix: add tdp_w to "
            "the accelerator in an overlay."
        )
    idle = acc.idle_w if acc.idle_w is not None else 0.1 * acc.tdp_w
    a = min(max(activity, 0.0), 1.0)
    return idle + (acc.tdp_w - idle) * a, table.power.host_share_of_tdp.value * acc.tdp_w


@dataclass(frozen=True)
class Footprint:
    """Energy and carbon of some accelerator-hours at one activity, in one region."""

    accelerator_hours: float
    activity: float
    accelerator_wh: float
    host_wh: float
    pue: float
    pue_source: str
    grid: GridIntensity
    grid_basis: Literal["location", "market"]
    embodied_g: float
    embodied_method: str
    method: str
    uncertainty_pct: float

    @property
    def it_wh(self) -> float:
        return self.accelerator_wh + self.host_wh

    @property
    def facility_wh(self) -> float:
        return self.it_wh * self.pue

    @property
    def operational_g(self) -> float:
        return self.facility_wh / 1000 * self.grid.gco2e_per_kwh

    def scaled(self, factor: float) -> Footprint:
        """The same footprint for `factor` times the work (per unit of output)."""
        return Footprint(
            self.accelerator_hours * factor,
            self.activity,
            self.accelerator_wh * factor,
            self.host_wh * factor,
            self.pue,
            self.pue_source,
            self.grid,
            self.grid_basis,
            self.embodied_g * factor,
            self.embodied_method,
            self.method,
            self.uncertainty_pct,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "energy_wh_it": self.it_wh,
            "energy_wh_accelerators": self.accelerator_wh,
            "energy_wh_host": self.host_wh,
            "energy_wh_facility": self.facility_wh,
            "pue": self.pue,
            "pue_source": self.pue_source,
            "grid_gco2e_per_kwh": self.grid.gco2e_per_kwh,
            "ci_dataset": self.grid.dataset,
            "ci_year": self.grid.year,
            "ci_basis": self.grid_basis,
            "ci_scope": self.grid.basis,
            "co2e_g_operational": self.operational_g,
            "co2e_g_embodied": self.embodied_g,
            "embodied_method": self.embodied_method,
            "activity": self.activity,
            "method": self.method,
            "uncertainty_pct": self.uncertainty_pct,
        }


def footprint(
    acc: Accelerator,
    accelerator_hours: float,
    activity: float,
    region: Region,
    grid: GridIntensity,
    table: EnergyTable,
    *,
    market_gco2e_per_kwh: float | None = None,
) -> Footprint:
    """Energy (accelerators, host, facility) and carbon (operational, embodied) of `accelerator_hours`.

    `market_gco2e_per_kwh` replaces the location-based grid with a market-based factor the user supplies
    (e.g. from a power purchase agreement)."""
    chip, host = power_w(acc, activity, table)
    kg = table.embodied_kg(acc)
    life_h = table.embodied.life_years.value * 8760
    if market_gco2e_per_kwh is not None:
        grid = GridIntensity(market_gco2e_per_kwh, "user supplied (market-based)", None, grid.basis, "")
    return Footprint(
        accelerator_hours=accelerator_hours,
        activity=activity,
        accelerator_wh=chip * accelerator_hours,
        host_wh=host * accelerator_hours,
        pue=region.pue,
        pue_source=region.pue_source,
        grid=grid,
        grid_basis="market" if market_gco2e_per_kwh is not None else "location",
        embodied_g=kg.value * 1000 * accelerator_hours / life_h,
        embodied_method=f"{kg.value:g} kgCO2e per accelerator over {life_h / 8760:g} years ({kg.source})",
        method=table.power.method,
        uncertainty_pct=table.power.uncertainty_pct.value,
    )
