"""Plan files: the workloads to serve together and the fleet-wide constraints and options."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from flopex.catalog import Market, Precision
from flopex.errors import PlanError, WorkloadError, did_you_mean
from flopex.workloads import Workload, load_workload, load_workload_text

__all__ = ["HostedCarbon", "PlanSpec", "Profile", "SpotPolicy", "load_plan"]


class SpotPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    on_demand_floor: float = Field(0.0, ge=0, le=1, description="share of every bucket served off spot")
    max_zone_share: float = Field(1.0, gt=0, le=1, description="share of a workload one zone's spot may carry")
    interruption_rate: float = Field(
        0.05, ge=0, le=1,
        description="chance per hour that a spot instance is interrupted, for offers that publish none (the catalog's"
        " meaning)",
    )  # fmt: skip
    recovery_s: PositiveFloat = Field(
        120.0, le=3600,
        description="seconds an interrupted spot instance serves nothing until it is replaced; a spot group is"
        " sized for utilisation x (1 - interruption_rate x recovery_s / 3600)",
    )  # fmt: skip


class Profile(BaseModel):
    """A measured capacity that overrides the performance model for one bucket on one accelerator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: str
    accelerator: str
    precision: Precision
    accelerators: PositiveInt = Field(description="accelerators per group the measurement used")
    input_tokens: PositiveInt
    output_tokens: PositiveInt
    requests_per_s: NonNegativeFloat
    source: str = Field(min_length=1)


class HostedCarbon(BaseModel):
    """A carbon factor for a hosted API, which publishes none: with it the API may serve a workload whose
    carbon is capped or priced, and its requests count towards the plan's carbon."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gco2e_per_1k_output_tokens: NonNegativeFloat = Field(
        description="operational gCO2e per 1,000 output tokens (the prompt's share included)"
    )
    source: str = Field(min_length=1, description="where the factor comes from (a provider report, an estimate)")


class PlanSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    workloads: list[str | dict[str, Any]] = Field(min_length=1, description="paths relative to the plan file")
    utilisation: float = Field(
        1.0,
        gt=0,
        le=1,
        description="load per group as a share of its SLO capacity; the capacity already holds the SLO at p99 under "
        "the workload's bursts and plans are verified in the simulator, so below 1 is headroom kept for growth",
    )
    carbon_price_usd_per_t: NonNegativeFloat = 0.0
    carbon_cap_kg_per_hour: PositiveFloat | None = None
    power_budget_kw: dict[str, PositiveFloat] = Field(default_factory=dict, description="site (provider/region) to kW")
    min_failure_domains: PositiveInt = 1
    failure_domain: Literal["region", "provider", "zone"] = "region"
    spot: SpotPolicy = SpotPolicy()
    sunk_cost: tuple[Market, ...] = Field(default=(), description="markets already paid for, up to their capacity")
    whole_assignment: bool = False
    slice_factor: PositiveInt = 1
    time_limit_s: PositiveFloat | None = Field(
        None,
        description="solver seconds; by default 10 s, plus 20 s per 1,000 integer variables and 10 s per 50,000"
        " continuous ones, up to 600 s (docs/planning.md)",
    )
    mip_gap: float = Field(0.01, ge=0, lt=1)
    confidence: float | None = Field(
        None, ge=0.5, lt=1, description="plan so that capacity and latency hold at this one-sided confidence of the "
        "performance model's out-of-sample error (data/calibration/error-bands.yaml); none: at its prediction"
    )  # fmt: skip
    profiles: list[Profile] = Field(default_factory=list)
    hosted_carbon: dict[str, HostedCarbon] = Field(
        default_factory=dict,
        description="hosted API id (provider/model, as `flopex catalog hosted` lists them) or provider to its carbon "
        "factor; an API id wins over its provider. A hosted API without one stays out where carbon is capped or priced",
    )


def _workloads(path: Path, spec: PlanSpec) -> list[Workload]:
    out: list[Workload] = []
    for index, item in enumerate(spec.workloads):
        if isinstance(item, str):
            out.append(load_workload((path.parent / item).resolve()))
        else:
            inline = path.parent / f"{path.name}#workloads[{index}]"
            try:
                out.append(load_workload_text(inline, yaml.safe_dump(item)))
            except WorkloadError as exc:
                raise PlanError(str(exc)) from None
    names = [w.name for w in out]
    if len(set(names)) != len(names):
        raise PlanError(f"{path}: two workloads share a name ({', '.join(names)}); names must be unique.")
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (itself, or the value type of a list or dict of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model that holds the last element of a validation error's location, so that a
    misspelt `spot.on_demand_flor` is matched against the spot policy's fields, not the plan's."""
    model: type[BaseModel] = PlanSpec
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        inner = None if field is None else _model_in(field.annotation)
        if inner is not None:
            model = inner
    return list(model.model_fields)


def load_plan(path: Path) -> tuple[PlanSpec, list[Workload]]:
    """A plan file, or a single workload file planned with the default options."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file. To fix: give a plan or workload YAML (see examples/).") from None
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not valid YAML ({exc}).") from None
    if isinstance(data, dict) and "workloads" not in data and "kind" in data:
        w = load_workload(path)
        return PlanSpec(name=w.name, workloads=[path.name]), [w]
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping with name and workloads (see examples/fleet-plan.yaml).")
    try:
        spec = PlanSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a misspelling first
        field = ".".join(str(p) for p in error["loc"])
        extra = error["type"] == "extra_forbidden"
        hint = did_you_mean(str(error["loc"][-1]), _fields_at(error["loc"])) if extra else ""
        raise PlanError(f"{path}: {field}: {error['msg']}.{hint} To fix: see docs/planning.md.") from None
    return spec, _workloads(path, spec)
