"""The plan document: the typed, versioned record of a plan that `flopex plan --json` writes and that everything
after the planner reads (the simulator, the gateway, deploy). One line per deployment, with its kind as a field,
its offer, hardware, precision, engine and layout, its capacity per bucket, what it costs and draws, and the
source and date of every price used; per workload, its traffic and the share of each bucket each deployment
takes. Unknown energy or carbon is null with the reason, never 0.

A document names its version (`plan_schema_version`); one of another version is refused with a message that
names both. The JSON Schema is `plan_document_schema()`, published as docs/schema/plan-document.json.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flopex.catalog import Catalog
from flopex.economics import chat_fit
from flopex.errors import PlanError, first_validation_error
from flopex.perf import Efficiency, Replica, replica_for
from flopex.plan._model import Candidate, Hosted
from flopex.plan._plan import Plan
from flopex.workloads import ChatWorkload, Workload, nearest_bucket

__all__ = [
    "PLAN_DOCUMENT_VERSION",
    "Deployment",
    "DeploymentKind",
    "Layout",
    "PlanDocument",
    "WorkloadPlan",
    "load_plan_document",
    "plan_document",
    "plan_document_schema",
    "replica_of",
]

PLAN_DOCUMENT_VERSION: Literal[2] = 2

DeploymentKind = Literal["cloud", "owned", "hosted_api"]

_WORKLOAD: TypeAdapter[Workload] = TypeAdapter(Workload)


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Doc):
    """The price a deployment was planned at, with where it came from."""

    usd_per_hour: float = Field(description="one group (self-hosted); what the workload spends (hosted API)")
    basis: str = Field(description="market (on_demand, spot, reserved, owned...) or 'per token'")
    source: str
    as_of: date | None


class Layout(_Doc):
    tensor_parallel: int
    pipeline_parallel: int
    replicas_per_group: int = Field(description="model replicas one group of instances holds")


class Deployment(_Doc):
    """One thing the plan buys: a number of groups of one offer for one workload, or a hosted API's share."""

    id: str = Field(description="unique in the document; routing shares are keyed by it")
    kind: DeploymentKind
    workload: str
    model: str
    offer: str = Field(description="catalog offer id, or hosted API id")
    provider: str
    region: str | None
    zone: str | None
    accelerator: str | None
    accelerators_per_group: int | None
    instances_per_group: int | None
    groups: int
    precision: str | None
    engine: str | None
    layout: Layout | None
    max_sequences_per_replica: int | None = Field(description="the engine's slot limit the model assumed")
    config: str
    spot: bool
    interruption_rate_per_hour: float
    usd_per_hour: float
    price: Price
    capacity_per_group: list[float] = Field(description="units/s per bucket one group serves within the SLO")
    utilisation: float | None = Field(description="planned load as a share of the SLO capacity")
    idle_kw_per_group: float | None
    busy_kw_per_group: float | None
    power_kw: float | None = Field(description="facility power at the planned load; null where unknown")
    grid_gco2e_per_kwh: float | None
    carbon_kg_per_hour: float | None
    unknown: str | None = Field(description="why power or carbon is null")

    @property
    def self_hosted(self) -> bool:
        return self.kind != "hosted_api"

    @property
    def replicas(self) -> int:
        """Model replicas in all of the deployment's groups (0 for a hosted API)."""
        return 0 if self.layout is None else self.groups * self.layout.replicas_per_group


class Bucket(_Doc):
    label: str
    input_tokens: int | None
    output_tokens: int | None
    rate: float = Field(description="units/s")
    shares: dict[str, float] = Field(description="deployment id -> share of this bucket's traffic")


class WorkloadPlan(_Doc):
    name: str
    kind: str
    model: str
    unit: str
    usd_per_hour: float
    usd_per_mtok_output: float | None
    buckets: list[Bucket]
    spec: dict[str, Any] = Field(description="the workload as validated, so the document stands alone")

    def workload(self) -> Workload:
        return _WORKLOAD.validate_python(self.spec)

    def bucket_of(self, input_tokens: int) -> int:
        """The bucket a prompt of `input_tokens` belongs to (the planner's and the simulator's rule)."""
        return nearest_bucket([b.input_tokens or 0 for b in self.buckets], input_tokens)


class Solver(_Doc):
    engine: str
    status: str
    gap: float | None
    bound: float | None
    time_limit_s: float
    stopped_at_time_limit: bool
    seconds: float
    integer_variables: int
    continuous_variables: int
    constraints: int


class Relaxation(_Doc):
    constraint: str
    text: str
    usd_per_hour: float | None


class PlanDocument(_Doc):
    plan_schema_version: Literal[2] = PLAN_DOCUMENT_VERSION
    name: str
    status: str
    message: str
    usd_per_hour: float
    usd_per_month: float
    hosted_usd_per_hour: float
    energy_kwh_per_hour: float | None = Field(description="null where any served load has unknown energy")
    carbon_kg_per_hour: float | None = Field(description="null where any served load has unknown carbon")
    known_energy_kwh_per_hour: float = Field(description="the part whose energy is known")
    known_carbon_kg_per_hour: float
    unknown: list[str] = Field(description="deployments whose energy or carbon is unknown, each with why")
    warnings: list[str]
    solver: Solver
    deployments: list[Deployment]
    workloads: list[WorkloadPlan]
    explanation: dict[str, Any]
    relaxations: list[Relaxation]
    options: dict[str, Any]
    skipped: list[str]
    verification: dict[str, Any] | None = None
    pareto: list[dict[str, Any]] | None = None

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "time_limit")

    def deployment(self, deployment_id: str) -> Deployment:
        return next(d for d in self.deployments if d.id == deployment_id)

    def workload(self, name: str) -> WorkloadPlan:
        return next(w for w in self.workloads if w.name == name)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def plan_document_schema() -> dict[str, Any]:
    return PlanDocument.model_json_schema()


def load_plan_document(path: Path) -> PlanDocument:
    """A plan document written by `flopex plan --json`; one of another version is refused, naming both."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(
            f"{path}: no such file. To fix: write one with `flopex plan PLAN.yaml --json > {path}`."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a plan document from `flopex plan --json` ({exc}).") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a plan document from `flopex plan --json` (the top level is not an object).")
    version = data.get("plan_schema_version")
    if version != PLAN_DOCUMENT_VERSION:
        raise PlanError(
            f"{path}: a plan document of version {version!r}; this flopex reads version {PLAN_DOCUMENT_VERSION}. "
            f"To fix: write it again with this flopex (`flopex plan PLAN.yaml --json > {path.name}`)."
        )
    try:
        return PlanDocument.model_validate(data)
    except ValidationError as exc:
        raise PlanError(
            f"{path}: {first_validation_error(exc)}. To fix: write it again with `flopex plan --json`."
        ) from None


def replica_of(
    workload: ChatWorkload, accelerator: str, per_instance: int, instances: int, precision: str, catalog: Catalog,
    eff: Efficiency,
) -> tuple[Replica, int]:  # fmt: skip
    """The model replica one group runs (the same fit the planner sized it with), and how many a group holds."""
    acc = catalog.accelerators[accelerator]
    fit = chat_fit(workload, acc, per_instance, instances, precision, eff)  # type: ignore[arg-type]
    prediction = fit.predictions[0]
    return replica_for(prediction, eff), prediction.layout.replicas


def plan_document(plan: Plan, catalog: Catalog, eff: Efficiency) -> PlanDocument:
    """The document of a solved (or infeasible) plan: prices' sources and dates come from `catalog`."""
    s = plan.solution
    deployments = [_deployment(plan, c, n, catalog, eff) for c, n in _deployed(plan)] + _hosted(plan, catalog)
    known_kw = sum(d.power_kw or 0.0 for d in deployments)
    known_g = sum((d.carbon_kg_per_hour or 0.0) * 1000 for d in deployments)
    unknown = [f"{d.id}: {d.unknown}" for d in deployments if d.unknown]
    energy_known = all(d.power_kw is not None for d in deployments)
    carbon_known = all(d.carbon_kg_per_hour is not None for d in deployments)
    opts = plan.options
    return PlanDocument(
        name=plan.spec.name, status=s.status, message=s.message, usd_per_hour=s.usd_per_hour,
        usd_per_month=s.usd_per_hour * min((w.horizon_hours_per_month for w in plan.workloads), default=730.0),
        hosted_usd_per_hour=s.hosted_usd_per_hour,
        energy_kwh_per_hour=known_kw if energy_known else None,
        carbon_kg_per_hour=known_g / 1000 if carbon_known else None,
        known_energy_kwh_per_hour=known_kw, known_carbon_kg_per_hour=known_g / 1000, unknown=unknown,
        warnings=plan.warnings(),
        solver=Solver(
            engine="HiGHS (scipy.optimize.milp)", status=s.status, gap=s.gap, bound=s.bound,
            time_limit_s=s.time_limit_s, stopped_at_time_limit=s.status == "time_limit", seconds=s.seconds,
            integer_variables=s.size[0], continuous_variables=s.size[1], constraints=s.size[2],
        ),
        deployments=deployments,
        workloads=_workloads(plan),
        explanation=plan._explanation_json(),
        relaxations=[Relaxation(constraint=b.group, text=b.text, usd_per_hour=b.usd_per_hour_without)
                     for b in plan.relaxations],
        options={
            "utilisation": opts.utilisation, "carbon_price_usd_per_t": opts.carbon_price_usd_per_t,
            "carbon_cap_kg_per_hour": plan.spec.carbon_cap_kg_per_hour,
            "min_failure_domains": plan.spec.min_failure_domains, "failure_domain": opts.domain,
            "on_demand_floor": opts.on_demand_floor, "max_zone_share": opts.max_zone_share,
            "recovery_s": opts.recovery_s, "whole_assignment": opts.whole, "confidence": plan.spec.confidence,
        },
        skipped=plan.inputs.skipped,
    )  # fmt: skip


def _deployed(plan: Plan) -> list[tuple[Candidate, int]]:
    """The candidates the plan deploys, dearest first (ties by id)."""
    cands = {c.id: c for c in plan.inputs.candidates}
    chosen = [(cands[cid], n) for cid, n in plan.solution.groups.items() if n > 0]
    return sorted(chosen, key=lambda cn: (-cn[1] * cn[0].usd_per_hour, cn[0].id))


def _deployment(plan: Plan, c: Candidate, n: int, catalog: Catalog, eff: Efficiency) -> Deployment:
    workload = next(w for w in plan.workloads if w.name == c.workload)
    offer = catalog.offer(c.offer)
    load = plan.solution.load.get(c.id, 0.0)
    kw = c.facility_kw(n, load) if c.power_known else None
    why = None if c.power_known else f"{c.accelerator or 'the accelerator'} has no published power (TDP)"
    layout = Layout(tensor_parallel=c.layout[0], pipeline_parallel=c.layout[1], replicas_per_group=c.layout[2])
    slots = None
    if isinstance(workload, ChatWorkload) and c.accelerator in catalog.accelerators and offer is not None:
        replica, _ = replica_of(
            workload, c.accelerator, offer.accelerator_count, c.instances, c.precision, catalog, eff
        )
        slots = replica.batch_limit
    zone = c.zone.rsplit("/", 1)[-1]
    return Deployment(
        id=c.id, kind="owned" if c.market in plan.spec.sunk_cost else "cloud", workload=c.workload,
        model=workload.model, offer=c.offer, provider=c.provider, region=c.region, zone=None if zone == "-" else zone,
        accelerator=c.accelerator or None, accelerators_per_group=c.accelerators or None,
        instances_per_group=c.instances, groups=n, precision=c.precision or None, engine=c.engine,
        layout=layout if c.layout[0] else None, max_sequences_per_replica=slots, config=c.label, spot=c.spot,
        interruption_rate_per_hour=c.interruption_rate, usd_per_hour=n * c.usd_per_hour,
        price=Price(
            usd_per_hour=c.usd_per_hour, basis=c.market or "unknown",
            source=offer.source if offer is not None else "not in the catalog given",
            as_of=offer.as_of if offer is not None else None,
        ),
        capacity_per_group=list(c.capacity), utilisation=load / n,
        idle_kw_per_group=c.idle_kw if c.power_known else None, busy_kw_per_group=c.busy_kw if c.power_known else None,
        power_kw=kw, grid_gco2e_per_kwh=c.grid_g_per_kwh,
        carbon_kg_per_hour=None if kw is None else kw * c.grid_g_per_kwh / 1000, unknown=why,
    )  # fmt: skip


def _hosted(plan: Plan, catalog: Catalog) -> list[Deployment]:
    """One deployment per (hosted API, workload) in use: each workload pays for its own requests."""
    offers = {h.id: h for h in catalog.hosted}
    out = []
    for h in plan.inputs.hosted:
        usd = plan.hosted_usd_per_hour(h.id, h.workload)
        if usd <= 0:
            continue
        api = offers.get(h.id)
        workload = next(w for w in plan.workloads if w.name == h.workload)
        carbon = _hosted_carbon_kg_per_hour(plan, h)
        out.append(Deployment(
            id=_hosted_id(h.workload, h.id), kind="hosted_api", workload=h.workload, model=workload.model,
            offer=h.id, provider=api.provider if api else h.id.split("/")[0], region=None, zone=None,
            accelerator=None, accelerators_per_group=None, instances_per_group=None, groups=0, precision=None,
            engine=None, layout=None, max_sequences_per_replica=None, config="hosted API, per token", spot=False,
            interruption_rate_per_hour=0.0, usd_per_hour=usd,
            price=Price(usd_per_hour=usd, basis="per token", source=api.price_source if api else "unknown",
                        as_of=None),
            capacity_per_group=[], utilisation=None, idle_kw_per_group=None, busy_kw_per_group=None, power_kw=None,
            grid_gco2e_per_kwh=None, carbon_kg_per_hour=carbon,
            unknown="the provider publishes no energy" + (" or carbon" if carbon is None else
                                                          "; carbon from the plan's hosted_carbon factor"),
        ))  # fmt: skip
    return out


def _hosted_carbon_kg_per_hour(plan: Plan, h: Hosted) -> float | None:
    """What the workload's requests to a hosted API emit, by the plan's carbon factor for it (None: none)."""
    if h.gco2e_per_request is None:
        return None
    demand = next(d for d in plan.inputs.demands if d.workload == h.workload)
    routed = (plan.solution.routing.get((h.workload, b), {}).get(h.id, 0.0) for b in range(len(demand.rates)))
    per_hour = (
        share * rate * 3600 * g for share, rate, g in zip(routed, demand.rates, h.gco2e_per_request, strict=True)
    )
    return sum(per_hour) / 1000


def _hosted_id(workload: str, api: str) -> str:
    return f"{workload}|{api}"


def _workloads(plan: Plan) -> list[WorkloadPlan]:
    hosted = {h.id for h in plan.inputs.hosted}
    out = []
    for d in plan.inputs.demands:
        w = next(w for w in plan.workloads if w.name == d.workload)
        usd = plan.workload_usd_per_hour(d.workload)
        outputs = plan.inputs.output_tokens[d.workload]
        out_tokens = sum(r * o for r, o in zip(d.rates, outputs, strict=True)) * 3600
        lengths = w.traffic.buckets() if isinstance(w, ChatWorkload) else []
        buckets = []
        for b, label in enumerate(d.labels):
            shares = plan.solution.routing.get((d.workload, b), {})
            buckets.append(Bucket(
                label=label, rate=d.rates[b],
                input_tokens=lengths[b].input_tokens if lengths else None,
                output_tokens=lengths[b].output_tokens if lengths else None,
                shares={(_hosted_id(d.workload, k) if k in hosted else k): v for k, v in shares.items() if v > 0},
            ))  # fmt: skip
        out.append(WorkloadPlan(
            name=d.workload, kind=w.kind, model=w.model, unit=plan.inputs.units[d.workload], usd_per_hour=usd,
            usd_per_mtok_output=usd / out_tokens * 1e6 if out_tokens else None, buckets=buckets,
            spec=_standalone(w),
        ))  # fmt: skip
    return out


def _standalone(w: Workload) -> dict[str, Any]:
    """The workload as validated, without the trace file it was read from (its histogram stands in for it; the
    simulator takes a trace to replay with --trace)."""
    spec = w.model_dump(mode="json")
    if isinstance(w, ChatWorkload) and w.traffic.trace is not None and w.traffic.lengths is not None:
        spec["traffic"]["trace"] = None
    return spec
