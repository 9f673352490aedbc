"""flopex's energy figures beside published measurements: the points of `calibration/energy.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from flopex.catalog import AcceleratorTable, Precision
from flopex.economics._energy import EnergyTable, power_w
from flopex.errors import EconomicsError, first_validation_error
from flopex.models import resolve_model
from flopex.perf import Efficiency, LLMQuery, parse_scenario, predict_llm

__all__ = ["EnergyCheck", "EnergyPoint", "check_energy", "load_energy_points", "shipped_energy_points"]


class _Measured(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    j_per_output_token: PositiveFloat | None = None
    wh_per_query: PositiveFloat | None = None
    low: PositiveFloat | None = None
    high: PositiveFloat | None = None


class EnergyPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    model: str
    accelerator: str
    count: PositiveInt
    precision: Precision
    scenario: str
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    measured: _Measured
    scope: Literal["gpu", "facility"]
    pue: float = Field(1.0, ge=1.0)
    assumed: str = ""
    uncertain: str | None = Field(None, description="why the setting is too unsure to hold the model to it")
    known_miss: str | None = Field(None, description="what the energy model lacks that makes it miss this point")
    source: str = Field(min_length=1)

    @property
    def status(self) -> str:
        return "uncertain" if self.uncertain else ("known miss" if self.known_miss else "check")


def shipped_energy_points() -> Path:
    return Path(str(resources.files("flopex.data").joinpath("calibration/energy.yaml")))


def load_energy_points(path: Path) -> list[EnergyPoint]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))["points"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise EconomicsError(f"{path}: expected a YAML mapping with a `points:` list ({exc}).") from None
    points = []
    for index, item in enumerate(raw):
        try:
            points.append(EnergyPoint.model_validate(item))
        except ValidationError as exc:
            raise EconomicsError(f"{path}: point #{index + 1}: {first_validation_error(exc)}.") from None
    return points


@dataclass(frozen=True)
class EnergyCheck:
    point: EnergyPoint
    metric: str
    measured: float
    low: float
    high: float
    predicted: float
    activity: float

    @property
    def ratio(self) -> float:
        return self.predicted / self.measured

    @property
    def within_range(self) -> bool:
        return self.low <= self.predicted <= self.high


def check_energy(
    points: list[EnergyPoint], accelerators: AcceleratorTable, eff: Efficiency, table: EnergyTable
) -> list[EnergyCheck]:
    """flopex's energy for each point's setting, in the point's metric and scope."""
    out = []
    for pt in points:
        acc = accelerators.resolve(pt.accelerator)
        q = LLMQuery(resolve_model(pt.model), acc, pt.count, pt.precision, pt.input_tokens, pt.output_tokens,
                     parse_scenario(pt.scenario))  # fmt: skip
        p = predict_llm(q, eff)
        activity = max(p.compute_utilization, p.memory_utilization)
        chip, host = power_w(acc, activity, table)
        watts = chip * pt.count if pt.scope == "gpu" else (chip + host) * pt.count * pt.pue
        m = pt.measured
        if m.j_per_output_token is not None:
            metric, measured, predicted = "J/output token", m.j_per_output_token, watts / p.output_tokens_per_s
        elif m.wh_per_query is not None:
            metric, measured, predicted = "Wh/query", m.wh_per_query, watts / p.requests_per_s / 3600
        else:
            raise EconomicsError(f"point {pt.id}: measured needs j_per_output_token or wh_per_query.")
        low, high = m.low or measured, m.high or measured
        out.append(EnergyCheck(pt, metric, measured, low, high, predicted, activity))
    return out
