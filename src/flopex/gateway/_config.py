"""Gateway configuration: per model, its backends (self-hosted on a catalog offer, or hosted), the routing
policy, limits, timeouts, retries and health checks. A plan JSON from `flopex plan --json` loads too."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from flopex.catalog import Catalog, Precision
from flopex.economics import EnergyTable, power_w
from flopex.errors import FlopexError, GatewayError, did_you_mean, first_validation_error
from flopex.models import resolve_model
from flopex.perf import Efficiency, LLMQuery, Scenario, predict_llm
from flopex.plan import Deployment, WorkloadPlan, load_plan_document
from flopex.routing import RoutingConfig

__all__ = ["BackendSpec", "GatewayConfig", "ModelRoute", "load_gateway_config", "resolve_backends"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackendConfig(_Strict):
    id: str = Field(min_length=1)
    base_url: str = Field(min_length=1, description="OpenAI-compatible base URL ending in /v1")
    api_key_env: str | None = None
    upstream_model: str | None = None
    max_concurrency: PositiveInt = 256
    weight: NonNegativeFloat = 1.0
    offer: str | None = Field(None, description="catalog offer id: price, hardware, region and grid come from it")
    precision: Precision = "fp8"
    usd_per_hour: NonNegativeFloat | None = None
    tokens_per_s: PositiveFloat | None = Field(None, description="output tokens/s at its SLO operating point")
    power_w: NonNegativeFloat | None = None
    grid_gco2e_per_kwh: NonNegativeFloat | None = None
    pue: float | None = Field(None, ge=1.0)
    usd_per_mtok_input: NonNegativeFloat | None = None
    usd_per_mtok_output: NonNegativeFloat | None = None
    jurisdictions: tuple[str, ...] = ()
    instances: PositiveInt = Field(1, description="instances of `offer` behind this endpoint (price and power scale)")
    hosted: str | None = Field(None, description="catalog hosted API id: its per-token prices come from the catalog")
    shares: tuple[NonNegativeFloat, ...] | None = Field(
        None, description="share of each bucket's traffic (from a plan); default: in proportion to `weight`"
    )


class Lengths(_Strict):
    """A typical request, for the performance model's operating point of each backend."""

    input_tokens: PositiveInt = 1000
    output_tokens: PositiveInt = 200


class ModelRoute(_Strict):
    routing: RoutingConfig = RoutingConfig()
    backends: list[BackendConfig] = Field(default_factory=list)
    buckets: tuple[PositiveInt, ...] = Field(
        (),
        description="prompt length (tokens) of each bucket the plan's shares are given for; a request goes to "
        "the nearest",
    )
    lengths: Lengths = Lengths()


class Endpoint(_Strict):
    base_url: str = Field(min_length=1)
    api_key_env: str | None = None
    upstream_model: str | None = None


class Timeouts(_Strict):
    connect_s: PositiveFloat = 2.0
    first_byte_s: PositiveFloat = Field(
        5.0,
        description="past the backend's expected time to first token (longer for long prompts): then it counts "
        "as hung and the request fails over",
    )
    between_chunks_s: PositiveFloat = 10.0
    total_s: PositiveFloat = 600.0
    keepalive_after_s: PositiveFloat = 2.0


class Limits(_Strict):
    max_in_flight: PositiveInt = 4096
    max_body_bytes: PositiveInt = 8_000_000
    batch_share: float = Field(
        0.8, gt=0, le=1, description="batch-tier keys are turned away once this share of max_in_flight is in use"
    )
    max_header_bytes: PositiveInt = Field(
        65_536, description="request line and headers together; past it: 431 and the connection closed"
    )
    header_timeout_s: PositiveFloat = Field(
        10.0, description="from a connection's opening (or a keep-alive request's first byte) to its headers' end"
    )
    body_timeout_s: PositiveFloat = Field(30.0, description="from the end of the headers to the end of the body")
    max_connections: PositiveInt | None = Field(
        None, description="open connections per process before new requests get 503; default 2 x max_in_flight"
    )


class Health(_Strict):
    interval_s: PositiveFloat = 2.0
    eject_after_failures: PositiveInt = 3
    backoff_s: PositiveFloat = 1.0
    max_backoff_s: PositiveFloat = 5.0
    redis_url: str | None = Field(
        None, description="share ejections with every gateway process on this Redis (`flopex serve` defaults it "
        "to tenants.redis_url, else FLOPEX_REDIS_URL); without it each process keeps its own"
    )  # fmt: skip


class Tenants(_Strict):
    """Keys, budgets, rate limits and the usage ledger. URLs may also come from FLOPEX_DATABASE_URL and
    FLOPEX_REDIS_URL."""

    enabled: bool = True
    database_url: str | None = Field(None, description="default: SQLite in flopex's data folder")
    redis_url: str | None = Field(None, description="share budgets and rate limits across gateway replicas")
    journal_dir: str | None = Field(None, description="default: journal/ in flopex's data folder")
    write_interval_s: PositiveFloat = Field(0.05, description="how long usage records gather before a batch write")
    default_max_tokens: PositiveInt = Field(
        4096, description="given to requests that name none, so that a reservation bounds the answer's cost"
    )


class GatewayConfig(_Strict):
    models: dict[str, ModelRoute] = Field(default_factory=dict)
    tenants: Tenants | None = None
    plan: str | None = Field(
        None, description="a plan document from `flopex plan --json`; its deployments become backends"
    )
    endpoints: dict[str, str | Endpoint] = Field(
        default_factory=dict, description="plan deployment id (or offer id) -> base URL, or {base_url, api_key_env}"
    )
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    max_retries: int = Field(2, ge=0, le=10)
    health: Health = Health()
    admin_token_env: str | None = None
    metrics_public: bool = Field(False, description="with tenants on, serve /metrics without the admin token")


@dataclass(frozen=True)
class BackendSpec:
    """A backend with everything routing and labels need, resolved once at start."""

    id: str
    model: str
    upstream_model: str
    base_url: str
    api_key: str | None
    max_concurrency: int
    weight: float
    usd_per_hour: float  # 0 for a hosted API
    tokens_per_s: float  # output tokens/s at its operating point (self-hosted)
    power_w: float | None  # facility watts at that operating point (busy); None where unknown
    grid_gco2e_per_kwh: float | None
    pue: float
    usd_per_mtok_input: float | None  # hosted APIs
    usd_per_mtok_output: float | None
    jurisdictions: frozenset[str]
    hardware: str
    region: str | None
    basis: str  # how cost, energy and carbon are derived
    ttft_s: float = 0.2  # predicted at its operating point (a prior for the moving averages)
    tpot_s: float = 0.03
    shares: tuple[float, ...] = (1.0,)  # share of each bucket of its model's traffic
    idle_w: float | None = None  # facility watts with nothing in flight; None where unknown
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hosted(self) -> bool:
        return self.usd_per_mtok_output is not None


def load_gateway_config(
    path: Path | None, *, plan: Path | None = None, endpoints: Mapping[str, str] | None = None
) -> GatewayConfig:
    """A gateway configuration from a YAML file, or from a plan document and its endpoints alone (`flopex serve
    --plan PLAN.json --endpoint DEPLOYMENT=URL`), or both (the plan and endpoints given add to the file's)."""
    config = GatewayConfig() if path is None else _read(path)
    if endpoints:
        config = config.model_copy(update={"endpoints": {**config.endpoints, **endpoints}})
    where = path if path is not None else plan
    if plan is not None:
        config = _with_plan(plan, config.model_copy(update={"plan": str(plan.resolve())}))
    elif config.plan is not None and path is not None:
        config = _with_plan(path.parent / config.plan, config)
    if not config.models:
        raise GatewayError(f"{where}: no models. To fix: list `models:` with their backends, or give a `plan:`.")
    return config


def _read(path: Path) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GatewayError(f"{path}: no such file. To fix: give a gateway YAML (see examples/gateway.yaml).") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise GatewayError(f"{path}: not valid YAML ({exc}).") from None
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        hint = did_you_mean(str(error["loc"][-1]), _FIELDS) if error["type"] == "extra_forbidden" else ""
        raise GatewayError(f"{path}: {first_validation_error(exc)}.{hint} To fix: see docs/gateway.md.") from None


_FIELDS = (
    set(GatewayConfig.model_fields) | set(ModelRoute.model_fields) | set(BackendConfig.model_fields)
    | set(RoutingConfig.model_fields)
)  # fmt: skip


def _with_plan(path: Path, config: GatewayConfig) -> GatewayConfig:
    """Backends from a plan document: one per deployment, its URL from `endpoints` (by deployment id, or by offer
    id), its shares of each bucket from the plan; the model's buckets are the workload's."""
    try:
        doc = load_plan_document(path)
    except FlopexError as exc:
        raise GatewayError(str(exc)) from None
    if not doc.feasible:
        raise GatewayError(f"{path}: the plan is {doc.status} ({doc.message}); there is no fleet to route to.")
    models: dict[str, ModelRoute] = dict(config.models)
    for w in doc.workloads:
        if any(other.model == w.model and other.name != w.name for other in doc.workloads):
            raise GatewayError(
                f"{path}: workloads {', '.join(o.name for o in doc.workloads if o.model == w.model)} all serve "
                f"{w.model}; the gateway routes by model. To fix: plan them as one workload."
            )
        backends = [_plan_backend(path, d, w, config.endpoints) for d in doc.deployments if d.workload == w.name]
        route = models.get(w.model, ModelRoute())
        mean_in = sum(b.rate * (b.input_tokens or 0) for b in w.buckets) / max(sum(b.rate for b in w.buckets), 1e-12)
        mean_out = sum(b.rate * (b.output_tokens or 0) for b in w.buckets) / max(sum(b.rate for b in w.buckets), 1e-12)
        models[w.model] = route.model_copy(update={
            "backends": [*route.backends, *backends],
            "buckets": tuple(b.input_tokens or 1 for b in w.buckets),
            "lengths": Lengths(input_tokens=max(1, round(mean_in)), output_tokens=max(1, round(mean_out))),
        })  # fmt: skip
    return config.model_copy(update={"models": models})


def _plan_backend(path: Path, d: Deployment, w: WorkloadPlan, endpoints: Mapping[str, str | Endpoint]) -> BackendConfig:
    given = endpoints.get(d.id, endpoints.get(d.offer))
    if given is None:
        what = "a hosted API" if d.kind == "hosted_api" else f"{d.groups} group(s) of {d.offer}"
        raise GatewayError(
            f"{path}: deployment {d.id} ({what}) has no entry in `endpoints:`. To fix: add "
            f"`endpoints: {{{d.id!r}: http://host:port/v1}}` to the gateway YAML (or key it by the offer id, "
            f"{d.offer!r}), or pass `flopex serve --endpoint '{d.offer}=http://host:port/v1'`."
        )
    ep = given if isinstance(given, Endpoint) else Endpoint(base_url=given)
    shares = tuple(b.shares.get(d.id, 0.0) for b in w.buckets)
    common: dict[str, Any] = {
        "id": d.id, "base_url": ep.base_url, "api_key_env": ep.api_key_env, "upstream_model": ep.upstream_model,
        "shares": shares, "weight": sum(b.rate * x for b, x in zip(w.buckets, shares, strict=True)),
    }  # fmt: skip
    if d.kind == "hosted_api":
        return BackendConfig(**common, hosted=d.offer)
    slots = (d.max_sequences_per_replica or 256) * max(d.replicas, 1)
    instances = d.groups * (d.instances_per_group or 1)
    return BackendConfig(
        **common, offer=d.offer, precision=d.precision or "fp8", max_concurrency=slots, instances=instances
    )


def resolve_backends(
    config: GatewayConfig, catalog: Catalog, eff: Efficiency, energy: EnergyTable, env: Mapping[str, str] | None = None
) -> dict[str, list[BackendSpec]]:
    """Every backend with its cost, energy and jurisdiction figures, from the catalog and the performance
    model where it names an offer, else from its explicit fields."""
    env = os.environ if env is None else env
    out: dict[str, list[BackendSpec]] = {}
    for model, route in config.models.items():
        specs = []
        seen: set[str] = set()
        buckets = max(1, len(route.buckets))
        total = sum(b.weight for b in route.backends) or 1.0
        for b in route.backends:
            if b.shares is not None and len(b.shares) != buckets:
                raise GatewayError(
                    f"model {model}, backend {b.id}: {len(b.shares)} shares for {buckets} bucket(s). To fix: give one "
                    "share per entry of the model's `buckets`."
                )
            if b.id in seen:
                raise GatewayError(f"model {model}: two backends are called {b.id!r}; ids must be unique.")
            seen.add(b.id)
            key = None
            if b.api_key_env:
                key = env.get(b.api_key_env)
                if key is None:
                    raise GatewayError(f"backend {b.id}: environment variable {b.api_key_env} is not set.")
            shares = b.shares if b.shares is not None else (b.weight / total,) * buckets
            specs.append(replace(_spec(model, route, b, key, catalog, eff, energy), shares=shares))
        out[model] = specs
    return out


def _spec(
    model: str, route: ModelRoute, b: BackendConfig, key: str | None, catalog: Catalog, eff: Efficiency,
    energy: EnergyTable,
) -> BackendSpec:  # fmt: skip
    common: dict[str, Any] = {
        "id": b.id, "model": model, "upstream_model": b.upstream_model or model, "base_url": b.base_url.rstrip("/"),
        "api_key": key, "max_concurrency": b.max_concurrency, "weight": b.weight,
    }  # fmt: skip
    if b.hosted is not None:
        api = next((h for h in catalog.hosted if h.id == b.hosted), None)
        if api is None:
            near = did_you_mean(b.hosted, [h.id for h in catalog.hosted])
            raise GatewayError(f"backend {b.id}: hosted API {b.hosted!r} is not in the catalog.{near}")
        b = b.model_copy(update={
            "usd_per_mtok_input": b.usd_per_mtok_input if b.usd_per_mtok_input is not None else api.input_usd_per_mtok,
            "usd_per_mtok_output": api.output_usd_per_mtok if b.usd_per_mtok_output is None else b.usd_per_mtok_output,
        })  # fmt: skip
    if b.usd_per_mtok_output is not None:
        return BackendSpec(
            **common, usd_per_hour=0.0, tokens_per_s=1.0, power_w=None, grid_gco2e_per_kwh=None, pue=1.0,
            usd_per_mtok_input=b.usd_per_mtok_input or 0.0, usd_per_mtok_output=b.usd_per_mtok_output,
            jurisdictions=frozenset(j.upper() for j in b.jurisdictions), hardware="hosted API", region=None,
            basis="list price per token; the provider publishes no energy",
        )  # fmt: skip
    if b.offer is None:
        missing = [f for f in ("usd_per_hour", "tokens_per_s") if getattr(b, f) is None]
        if missing:
            raise GatewayError(
                f"backend {b.id}: give `offer:` (a catalog offer id) or {', '.join(missing)} (and usd_per_mtok_* for "
                "a hosted API)."
            )
        return BackendSpec(
            **common, usd_per_hour=b.usd_per_hour or 0.0, tokens_per_s=b.tokens_per_s or 1.0, power_w=b.power_w,
            grid_gco2e_per_kwh=b.grid_gco2e_per_kwh, pue=b.pue or 1.0, usd_per_mtok_input=None,
            usd_per_mtok_output=None, jurisdictions=frozenset(j.upper() for j in b.jurisdictions),
            hardware="as configured", region=None, basis="configured $/h over configured tokens/s",
        )  # fmt: skip
    offer = catalog.offer(b.offer)
    if offer is None:
        near = did_you_mean(b.offer, [o.id for o in catalog.offers])
        raise GatewayError(f"backend {b.id}: offer {b.offer!r} is not in the catalog.{near}")
    acc = catalog.accelerators[offer.accelerator]
    region = catalog.regions.resolve(offer.provider, offer.region)
    slo = route.routing.slo
    scenario = Scenario("server", 0, slo.ttft_s or 2.0, slo.tpot_s or 0.2)
    n_in, n_out = route.lengths.input_tokens, route.lengths.output_tokens
    count = offer.accelerator_count * b.instances
    query = LLMQuery(resolve_model(model), acc, count, b.precision, n_in, n_out, scenario)
    p = predict_llm(query, eff)
    activity = max(p.compute_utilization, p.memory_utilization)
    busy_w = idle_w = None  # an accelerator without a published TDP: unknown, not zero
    if acc.tdp_w is not None:
        chip, host = power_w(acc, activity, energy)
        idle_chip, _ = power_w(acc, 0.0, energy)  # as the planner takes a group's idle power
        busy_w, idle_w = (chip + host) * count * region.pue, (idle_chip + host) * count * region.pue
    grid = b.grid_gco2e_per_kwh if b.grid_gco2e_per_kwh is not None else catalog.regions.grid(region).gco2e_per_kwh
    return BackendSpec(
        **common,
        usd_per_hour=b.usd_per_hour if b.usd_per_hour is not None else offer.price_usd_per_hour * b.instances,
        tokens_per_s=b.tokens_per_s or p.output_tokens_per_s,
        power_w=b.power_w if b.power_w is not None else busy_w,
        idle_w=idle_w if b.power_w is None else None,
        grid_gco2e_per_kwh=grid,
        pue=region.pue, usd_per_mtok_input=None, usd_per_mtok_output=None,
        jurisdictions=frozenset(j.upper() for j in (b.jurisdictions or catalog.regions.jurisdictions(region))),
        hardware=f"{count} x {acc.id} ({b.instances} x {offer.instance_type})",
        region=f"{offer.provider}/{offer.region}",
        basis=f"{offer.market} {b.instances} x ${offer.price_usd_per_hour:g}/h over "
        f"{p.output_tokens_per_s:,.0f} output tokens/s "
        f"(flopex performance model, {n_in:,}/{n_out:,}-token requests at the server SLOs)",
        ttft_s=p.point.ttft_s, tpot_s=p.point.tpot_s,
    )  # fmt: skip
