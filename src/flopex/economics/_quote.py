"""Quotes: what a workload costs, uses and emits on every offer that can serve it, ranked.

For each offer (an instance type in a region and market, at a price) flopex takes the fewest instances that
hold the model as one group, tries every allowed precision the chip runs, and sizes the groups the traffic
needs. Hosted token-priced offers of the same model are quoted from their list prices. Costs include the
idle headroom of the last group (instances are whole); energy scales with the share of capacity in use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from flopex.catalog import Accelerator, Catalog, GridIntensity, HostedOffer, Offer, Precision
from flopex.economics._energy import EnergyTable, Footprint, Unit, footprint
from flopex.economics._shapes import GROUP_SIZES, offer_shapes
from flopex.errors import DoesNotFitError
from flopex.models import resolve_model, resolve_video_model
from flopex.perf import (
    AgentQuery,
    AgentSession,
    Efficiency,
    LLMQuery,
    Prediction,
    Retention,
    Scenario,
    TrainingPrediction,
    TrainingQuery,
    VideoPrediction,
    VideoQuery,
    hosted_slo,
    input_share,
    predict_agent,
    predict_llm,
    predict_training,
    predict_video,
)
from flopex.workloads import AgentWorkload, ChatWorkload, TrainingWorkload, VideoWorkload, Workload

__all__ = [
    "ChatFit",
    "Crossover",
    "Quote",
    "QuoteRow",
    "agent_fit",
    "agent_retention",
    "chat_fit",
    "quote",
    "video_fit",
]

_T = TypeVar("_T")
_UNIT_NAMES: dict[Unit, str] = {
    "1k_output_tokens": "1M output tokens",
    "video_minute": "video-minute",
    "agent_hour": "agent-hour",
    "run": "run",
}
_ENERGY_UNIT: dict[Unit, str] = {
    "1k_output_tokens": "1k output tokens",
    "video_minute": "video-minute",
    "agent_hour": "agent-hour",
    "run": "run",
}


@dataclass(frozen=True)
class QuoteRow:
    source: Literal["offer", "hosted"]
    offer_id: str
    provider: str
    region: str | None
    market: str | None
    accelerator: str | None
    instance_type: str | None
    unit: Unit
    usd_per_hour: float
    usd_per_unit: float
    slo_met: bool | None
    why: str
    instances: int = 0
    instances_per_group: int = 0
    accelerators: int = 0
    precision: str | None = None
    tensor_parallel: int | None = None
    engine: str | None = None
    load: float = 0.0
    usd_per_mtok_input: float | None = None
    usd_per_mtok_output: float | None = None
    footprint: Footprint | None = None  # per energy unit; None where the accelerator's power is unknown
    power_kw: float | None = None  # facility, all instances
    grid: GridIntensity | None = None  # the region's grid, known even where the power is not; None: hosted
    grid_basis: Literal["location", "market"] | None = None
    violations: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    price_source: str = ""
    price_as_of: str | None = None

    @property
    def unit_name(self) -> str:
        return _UNIT_NAMES[self.unit]

    @property
    def energy_unit(self) -> str:
        return _ENERGY_UNIT[self.unit]

    @property
    def wh_per_unit(self) -> float | None:
        return None if self.footprint is None else self.footprint.facility_wh

    @property
    def gco2e_per_unit(self) -> float | None:
        return None if self.footprint is None else self.footprint.operational_g

    @property
    def eligible(self) -> bool:
        return self.slo_met is not False and not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "offer": self.offer_id,
            "provider": self.provider,
            "region": self.region,
            "market": self.market,
            "accelerator": self.accelerator,
            "instance_type": self.instance_type,
            "instances": self.instances,
            "instances_per_group": self.instances_per_group,
            "accelerators": self.accelerators,
            "precision": self.precision,
            "tensor_parallel": self.tensor_parallel,
            "engine": self.engine,
            "load": self.load,
            "usd_per_hour": self.usd_per_hour,
            "unit": self.unit_name,
            "usd_per_unit": self.usd_per_unit,
            "usd_per_mtok_input": self.usd_per_mtok_input,
            "usd_per_mtok_output": self.usd_per_mtok_output,
            "slo_met": self.slo_met,
            "why": self.why,
            "violations": list(self.violations),
            "energy_unit": self.energy_unit,
            "wh_per_unit": self.wh_per_unit,
            "gco2e_per_unit": self.gco2e_per_unit,
            "power_kw": self.power_kw,
            "footprint": None if self.footprint is None else self.footprint.to_json(),
            "grid_gco2e_per_kwh": None if self.grid is None else self.grid.gco2e_per_kwh,
            "ci_dataset": None if self.grid is None else self.grid.dataset,
            "ci_basis": self.grid_basis,
            "price_source": self.price_source,
            "price_as_of": self.price_as_of,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Crossover:
    """Where self-hosting on the best offer starts to beat the cheapest hosted API for the model."""

    hosted: str
    hosted_usd_per_request: float
    offer: str
    group_usd_per_hour: float
    group_requests_per_s: float
    requests_per_s: float | None  # None: never, even at full load
    output_tokens_per_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "hosted": self.hosted,
            "hosted_usd_per_request": self.hosted_usd_per_request,
            "offer": self.offer,
            "group_usd_per_hour": self.group_usd_per_hour,
            "group_requests_per_s": self.group_requests_per_s,
            "requests_per_s": self.requests_per_s,
            "output_tokens_per_s": self.output_tokens_per_s,
        }


@dataclass(frozen=True)
class Quote:
    workload: Workload
    rows: tuple[QuoteRow, ...]
    skipped: tuple[str, ...]
    crossover: Crossover | None

    def to_json(self, top: int | None = None) -> dict[str, Any]:
        rows = self.rows if top is None else self.rows[:top]
        return {
            "workload": self.workload.name,
            "kind": self.workload.kind,
            "model": self.workload.model,
            "rows": [r.to_json() for r in rows],
            "crossover": None if self.crossover is None else self.crossover.to_json(),
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True)
class _Ctx:
    catalog: Catalog
    eff: Efficiency
    energy: EnergyTable
    market_gco2e_per_kwh: float | None


def _footprint(ctx: _Ctx, offer: Offer, acc_hours: float, activity: float) -> Footprint | None:
    """Energy and carbon of the work, or None where the catalog has no TDP for the accelerator."""
    acc = ctx.catalog.accelerators[offer.accelerator]
    if acc.tdp_w is None:
        return None
    region = ctx.catalog.regions.resolve(offer.provider, offer.region)
    grid = ctx.catalog.regions.grid(region)
    return footprint(acc, acc_hours, activity, region, grid, ctx.energy, market_gco2e_per_kwh=ctx.market_gco2e_per_kwh)


def _kw(fp: Footprint | None, units_per_hour: float) -> float | None:
    """Facility power of all instances: Wh per unit x units per hour."""
    return None if fp is None else fp.facility_wh * units_per_hour / 1000


def _grid(ctx: _Ctx, offer: Offer) -> tuple[GridIntensity, Literal["location", "market"]]:
    """The grid of the offer's region (its own intensity, its country's or the world's, as the catalog has it),
    or the user's market-based factor; known whether or not the accelerator's power is."""
    grid = ctx.catalog.regions.grid(ctx.catalog.regions.resolve(offer.provider, offer.region))
    if ctx.market_gco2e_per_kwh is None:
        return grid, "location"
    return GridIntensity(ctx.market_gco2e_per_kwh, "user supplied (market-based)", None, grid.basis, ""), "market"


def _row(ctx: _Ctx, offer: Offer, unit: Unit, **kw: Any) -> QuoteRow:
    fp: Footprint | None = kw.get("footprint")
    grid, basis = (fp.grid, fp.grid_basis) if fp is not None else _grid(ctx, offer)
    return QuoteRow(
        source="offer",
        offer_id=offer.id,
        provider=offer.provider,
        region=offer.region,
        market=offer.market,
        accelerator=offer.accelerator,
        instance_type=offer.instance_type,
        unit=unit,
        price_source=offer.source,
        price_as_of=str(offer.as_of),
        grid=grid,
        grid_basis=basis,
        **kw,
    )


def _violations(
    w: Workload, fp: Footprint | None, power_kw: float | None, unknown: str = "no TDP in the catalog"
) -> tuple[str, ...]:
    """The constraints a row breaks; an unknown footprint breaks a carbon or power limit (it cannot be shown
    to meet it), saying why it is unknown."""
    c, out = w.constraints, []
    carbon = c.max_gco2e_per_1k_output_tokens
    if carbon is not None and w.kind in ("chat", "completion"):
        if fp is None:
            out.append(f"carbon unknown ({unknown})")
        elif fp.operational_g > carbon:
            out.append(f"carbon {fp.operational_g:.3g} > {carbon:g} gCO2e per 1k output tokens")
    if c.max_power_kw is not None:
        if power_kw is None:
            out.append(f"power unknown ({unknown})")
        elif power_kw > c.max_power_kw:
            out.append(f"power {power_kw:,.1f} > {c.max_power_kw:g} kW")
    return tuple(out)


# --- chat and completion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatFit:
    """One group of instances at one precision, over the length buckets."""

    predictions: tuple[Prediction, ...]
    capacity_rps: float  # requests/s one group sustains within the SLO (time-shared over the buckets)
    met: bool
    why: str
    activity: float
    input_share: float


def _split(per_instance: int, group: int) -> tuple[int | None, int | None]:
    """(tensor, pipeline) degrees to fix for a group of instances: TP inside one instance, PP across them;
    a single instance is left to the model to lay out."""
    if group == 1:
        return None, None
    tp = 1
    while tp * 2 <= per_instance:
        tp *= 2
    return tp, group * (per_instance // tp)


def chat_fit(
    w: ChatWorkload, acc: Accelerator, per_instance: int, group: int, precision: Precision, eff: Efficiency
) -> ChatFit:
    buckets = w.traffic.buckets()
    model = resolve_model(w.model)
    preds: list[Prediction] = []
    time_share = activity = share_in = 0.0
    met, why = True, "SLO met"
    tp, pp = _split(per_instance, group)
    for b in buckets:
        ttft, tpot = w.slo.limits(b.output_tokens)
        e2e = w.slo.e2e_p99_s
        burst = w.traffic.burstiness
        scenario = (
            Scenario("server", 0, ttft, tpot, burstiness=burst)
            if e2e is None
            else Scenario("server", 0, e2e_slo_s=e2e, burstiness=burst)
        )
        q = LLMQuery(
            model, acc, per_instance * group, precision, b.input_tokens, b.output_tokens, scenario, None, tp, pp
        )
        p = predict_llm(q, eff)
        preds.append(p)
        if not p.slo_met and met:
            met = False
            parts = []
            if e2e is not None:
                e2e_p99 = p.point.ttft_p99_s + (b.output_tokens - 1) * p.point.tpot_p99_s
                parts.append(f"p99 end to end about {e2e_p99:,.2f} s > {e2e:,.2f} s")
            elif p.point.ttft_p99_s > ttft:
                parts.append(f"p99 TTFT {p.point.ttft_p99_s * 1e3:,.0f} ms > {ttft * 1e3:,.0f} ms")
            if p.point.tpot_p99_s > tpot:
                parts.append(f"p99 TPOT {p.point.tpot_p99_s * 1e3:,.1f} ms > {tpot * 1e3:,.1f} ms")
            why = f"{' and '.join(parts)} even at the smallest batch ({b.input_tokens:,} in / {b.output_tokens:,} out)"
        seconds = b.weight / p.requests_per_s  # group-seconds per request of this bucket, weighted
        time_share += seconds
        activity += seconds * max(p.compute_utilization, p.memory_utilization)
        share_in += seconds * input_share(p, eff)
    return ChatFit(tuple(preds), 1 / time_share, met, why, activity / time_share, share_in / time_share)


def _quote_chat(w: ChatWorkload, ctx: _Ctx, skipped: list[str]) -> list[QuoteRow]:
    rate = w.traffic.requests_per_s or 0.0
    mean_in, mean_out = w.traffic.mean_lengths()

    def evaluate(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> ChatFit:
        return chat_fit(w, acc, per_instance, group, precision, ctx.eff)

    def to_row(offer: Offer, group: int, count: int, precision: Precision, fit: ChatFit) -> QuoteRow:
        groups = max(1, math.ceil(rate / fit.capacity_rps - 1e-9))
        load = rate / (groups * fit.capacity_rps)
        usd_h = groups * group * offer.price_usd_per_hour
        out_per_h = rate * mean_out * 3600
        fp = _footprint(ctx, offer, groups * count / (out_per_h / 1000), fit.activity * load)
        power = _kw(fp, out_per_h / 1000)
        p0 = fit.predictions[0]
        return _row(
            ctx, offer, "1k_output_tokens", usd_per_hour=usd_h, usd_per_unit=usd_h / out_per_h * 1e6,
            usd_per_mtok_input=fit.input_share * usd_h / (rate * mean_in * 3600) * 1e6,
            usd_per_mtok_output=(1 - fit.input_share) * usd_h / out_per_h * 1e6,
            slo_met=fit.met, why=fit.why, instances=groups * group, instances_per_group=group,
            accelerators=groups * count, precision=precision, tensor_parallel=p0.layout.tensor_parallel,
            engine=p0.engine, load=load, footprint=fp, power_kw=power, violations=_violations(w, fp, power),
            detail={
                "group_requests_per_s": fit.capacity_rps,
                "ttft_p99_s": max(p.point.ttft_p99_s for p in fit.predictions),
                "tpot_p99_s": max(p.point.tpot_p99_s for p in fit.predictions),
                "layout": str(p0.layout),
                "group_usd_per_hour": group * offer.price_usd_per_hour,
            },
        )  # fmt: skip

    return _each_group(w, ctx, skipped, evaluate, to_row)


def _hosted_rows(w: ChatWorkload, ctx: _Ctx) -> list[QuoteRow]:
    mean_in, mean_out = w.traffic.mean_lengths()
    rate = w.traffic.requests_per_s or 0.0
    c = w.constraints
    rows = []
    for h in ctx.catalog.hosted:
        if h.model != resolve_model(w.model).id:
            continue
        if c.providers and h.provider not in {p.lower() for p in c.providers}:
            continue
        if c.jurisdictions or c.regions or (c.markets and "on_demand" not in c.markets):
            continue  # a hosted API names no region to check against; it is pay-as-you-go (on demand)
        per_request = (mean_in * h.input_usd_per_mtok + mean_out * h.output_usd_per_mtok) / 1e6
        usd_h = per_request * rate * 3600
        met, why = _hosted_met(w, h)
        rows.append(
            QuoteRow(
                source="hosted",
                offer_id=h.id,
                provider=h.provider,
                region=None,
                market=None,
                accelerator=None,
                instance_type=None,
                unit="1k_output_tokens",
                usd_per_hour=usd_h,
                usd_per_unit=per_request / mean_out * 1e6,
                usd_per_mtok_input=h.input_usd_per_mtok,
                usd_per_mtok_output=h.output_usd_per_mtok,
                slo_met=met,
                why=why,
                load=1.0,
                violations=_violations(w, None, None, "hosted APIs publish none"),
                price_source=h.price_source,
                detail={"usd_per_request": per_request},
            )
        )
    return rows


def _hosted_met(w: ChatWorkload, h: HostedOffer) -> tuple[bool | None, str]:
    """Whether a hosted API meets the workload's SLO on every bucket, from what its provider publishes: False
    where a bucket is known to miss it, None (unknown, never met) where a figure the SLO needs is not published,
    with why; the planner applies the same rule (`hosted_slo`)."""
    verdicts = [hosted_slo(h, w.slo, b.output_tokens) for b in w.traffic.buckets()]
    for wanted in (False, None):
        found = next((text for met, text in verdicts if met is wanted), None)
        if found is not None:
            return wanted, found
    return True, verdicts[0][1]


def _crossover(w: ChatWorkload, rows: Sequence[QuoteRow], hosted: Sequence[QuoteRow]) -> Crossover | None:
    own = [r for r in rows if r.source == "offer" and r.eligible]
    if not own or not hosted:
        return None
    cheapest = min(hosted, key=lambda r: r.usd_per_unit)
    per_request = float(cheapest.detail["usd_per_request"])
    # the offer whose full group is cheapest per request
    best = min(own, key=lambda r: r.detail["group_usd_per_hour"] / r.detail["group_requests_per_s"])
    group_usd, group_rps = float(best.detail["group_usd_per_hour"]), float(best.detail["group_requests_per_s"])
    r_star = group_usd / (3600 * per_request)
    _, mean_out = w.traffic.mean_lengths()
    within = r_star <= group_rps
    return Crossover(
        hosted=cheapest.offer_id,
        hosted_usd_per_request=per_request,
        offer=best.offer_id,
        group_usd_per_hour=group_usd,
        group_requests_per_s=group_rps,
        requests_per_s=r_star if within else None,
        output_tokens_per_s=r_star * mean_out if within else None,
    )


# --- video, agents, training -----------------------------------------------------------------------------


def _each_group(
    w: Workload,
    ctx: _Ctx,
    skipped: list[str],
    evaluate: Callable[[Accelerator, int, int, Precision], _T],
    to_row: Callable[[Offer, int, int, Precision, _T], QuoteRow],
    *,
    groups: tuple[int, ...] = GROUP_SIZES,
) -> list[QuoteRow]:
    """For each offer, the cheapest eligible row over precisions, each on the fewest instances that fit."""
    rows = []
    for offer, shapes in offer_shapes(w, ctx.catalog, evaluate, groups):
        found = [
            to_row(offer, s.group, offer.accelerator_count * s.group, s.precision, s.fit)
            for s in shapes
            if s.fit is not None
        ]
        if found:
            rows.append(min(found, key=lambda r: (not r.eligible, r.usd_per_unit)))
            continue
        errors = [str(s.error) for s in shapes if s.error is not None]
        problem = errors[-1] if errors else f"{w.model} does not fit on up to {groups[-1]} instance(s)"
        skipped.append(f"{offer.id}: {problem}")
    return rows


def video_fit(
    w: VideoWorkload, acc: Accelerator, per_instance: int, precision: Precision, eff: Efficiency
) -> VideoPrediction:
    """The sequence-parallel degree inside one instance with the most videos per hour within the latency SLO
    (the fastest degree when none meets it)."""
    model = resolve_video_model(w.model)
    v, limit = w.video, w.slo.max_seconds_per_video
    q = VideoQuery(
        model, acc, per_instance, v.width or model.width, v.height or model.height, v.frames or model.frames,
        v.steps or model.steps, precision, None, v.fps,
    )  # fmt: skip
    fastest = predict_video(q, eff)
    options = [fastest]
    k = 1
    while k < fastest.sequence_parallel:
        try:
            options.append(predict_video(replace(q, sequence_parallel=k), eff))
        except DoesNotFitError:
            pass
        k *= 2
    within = [p for p in options if limit is None or p.seconds_per_video <= limit]
    return max(within, key=lambda p: p.videos_per_hour) if within else fastest


def agent_fit(
    w: AgentWorkload, acc: Accelerator, per_instance: int, group: int, precision: Precision, eff: Efficiency
) -> AgentSession:
    """An agent session on one group of instances (TP inside an instance, pipeline stages across them)."""
    s = w.session
    ttft, tpot = w.slo.limits(s.output_per_turn)
    tp, pp = _split(per_instance, group)
    q = AgentQuery(
        resolve_model(w.model), acc, per_instance * group, precision, s.turns_per_hour, s.tokens_per_turn,
        s.output_per_turn, s.idle_s, s.initial_tokens, 1.0, Scenario("server", 0, ttft, tpot), None, tp, pp,
    )  # fmt: skip
    return predict_agent(q, eff)


def agent_retention(w: AgentWorkload, session: AgentSession) -> Retention:
    return session.cheapest if w.session.retention == "cheapest" else w.session.retention


def _quote_video(w: VideoWorkload, ctx: _Ctx, skipped: list[str]) -> list[QuoteRow]:
    limit = w.slo.max_seconds_per_video

    def evaluate(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> VideoPrediction:
        return video_fit(w, acc, per_instance, precision, ctx.eff)

    def to_row(offer: Offer, group: int, count: int, precision: Precision, p: VideoPrediction) -> QuoteRow:
        demand = w.traffic.videos_per_hour
        groups = max(1, math.ceil(demand / p.videos_per_hour - 1e-9))
        load = demand / (groups * p.videos_per_hour)
        usd_h = groups * group * offer.price_usd_per_hour
        minutes_per_h = demand * p.video_seconds / 60
        met = limit is None or p.seconds_per_video <= limit
        fp = _footprint(ctx, offer, groups * count / minutes_per_h, p.mfu * load)
        power = _kw(fp, minutes_per_h)
        return _row(
            ctx, offer, "video_minute", usd_per_hour=usd_h, usd_per_unit=usd_h / minutes_per_h, slo_met=met,
            why="SLO met" if met else f"{p.seconds_per_video:,.0f} s per video > {limit:g} s",
            instances=groups * group, instances_per_group=group, accelerators=groups * count, precision=precision,
            load=load, footprint=fp, power_kw=power, violations=_violations(w, fp, power),
            detail={"seconds_per_video": p.seconds_per_video, "sequence_parallel": p.sequence_parallel,
                    "videos_per_hour_per_group": p.videos_per_hour},
        )  # fmt: skip

    return _each_group(w, ctx, skipped, evaluate, to_row, groups=(1,))


def _quote_agent(w: AgentWorkload, ctx: _Ctx, skipped: list[str]) -> list[QuoteRow]:
    def evaluate(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> AgentSession:
        return agent_fit(w, acc, per_instance, group, precision, ctx.eff)

    def to_row(offer: Offer, group: int, count: int, precision: Precision, session: AgentSession) -> QuoteRow:
        retention = agent_retention(w, session)
        per_session_acc_s = session.costs[retention].accelerator_seconds
        per_group = count * 3600 / per_session_acc_s
        demand = w.traffic.concurrent_sessions
        groups = max(1, math.ceil(demand / per_group - 1e-9))
        load = demand / (groups * per_group)
        usd_h = groups * group * offer.price_usd_per_hour
        serving = session.serving
        activity = max(serving.compute_utilization, serving.memory_utilization) * load
        fp = _footprint(ctx, offer, groups * count / demand, activity)
        power = _kw(fp, demand)
        met = serving.slo_met
        return _row(
            ctx, offer, "agent_hour", usd_per_hour=usd_h, usd_per_unit=usd_h / demand, slo_met=met,
            why="SLO met" if met else "the turn's TTFT/TPOT SLO cannot be met on this layout",
            instances=groups * group, instances_per_group=group, accelerators=groups * count, precision=precision,
            tensor_parallel=serving.layout.tensor_parallel, engine=serving.engine, load=load, footprint=fp,
            power_kw=power, violations=_violations(w, fp, power),
            detail={"retention": retention, "sessions_per_group": per_group,
                    "accelerator_seconds_per_session_hour": per_session_acc_s},
        )  # fmt: skip

    return _each_group(w, ctx, skipped, evaluate, to_row)


def _quote_training(w: TrainingWorkload, ctx: _Ctx, skipped: list[str]) -> list[QuoteRow]:
    model = resolve_model(w.model)
    t = w.training

    def run_on(acc: Accelerator, per_instance: int, count: int, precision: Precision) -> TrainingPrediction:
        q = TrainingQuery(
            model, acc, count, t.tokens, precision, t.sequence_length, t.global_batch_tokens, per_instance
        )
        return predict_training(q, ctx.eff)  # raises DoesNotFitError below the minimum count

    def evaluate(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> TrainingPrediction:
        return run_on(acc, per_instance, per_instance * group, precision)  # data parallel across instances

    def to_row(offer: Offer, group: int, count: int, precision: Precision, run: TrainingPrediction) -> QuoteRow:
        deadline = w.slo.deadline_days
        instances = group
        if deadline is not None:  # enough instances to finish in time (MFU barely moves with count)
            needed = run.accelerator_hours / (deadline * 24)
            instances = max(group, math.ceil(needed / offer.accelerator_count))
            run = run_on(run.query.accelerator, offer.accelerator_count, instances * offer.accelerator_count, precision)
        hours = run.wall_days * 24
        usd_h = instances * offer.price_usd_per_hour
        met = deadline is None or run.wall_days <= deadline * (1 + 1e-9)
        fp = _footprint(ctx, offer, run.accelerator_hours, ctx.energy.power.training_activity.value)
        power = _kw(fp, 1 / hours)
        return _row(
            ctx, offer, "run", usd_per_hour=usd_h, usd_per_unit=usd_h * hours, slo_met=met,
            why="SLO met" if met else f"{run.wall_days:,.1f} days > {deadline:g}-day deadline",
            instances=instances, instances_per_group=group, accelerators=instances * offer.accelerator_count,
            precision=precision, tensor_parallel=run.tensor_parallel, load=1.0, footprint=fp, power_kw=power,
            violations=_violations(w, fp, power),
            detail={"wall_days": run.wall_days, "accelerator_hours": run.accelerator_hours, "mfu": run.mfu},
        )  # fmt: skip

    return _each_group(w, ctx, skipped, evaluate, to_row)


def quote(
    w: Workload,
    catalog: Catalog,
    eff: Efficiency,
    energy: EnergyTable,
    *,
    market_gco2e_per_kwh: float | None = None,
) -> Quote:
    """Every offer that can serve the workload, cheapest eligible first (SLO met or unknown, within the
    constraints), then the rest; with the self-hosting crossover for chat workloads."""
    ctx = _Ctx(catalog, eff, energy, market_gco2e_per_kwh)
    skipped: list[str] = []
    crossover = None
    if isinstance(w, ChatWorkload):
        rows = _quote_chat(w, ctx, skipped)
        hosted = _hosted_rows(w, ctx)
        crossover = _crossover(w, rows, hosted)
        rows += hosted
    elif isinstance(w, VideoWorkload):
        rows = _quote_video(w, ctx, skipped)
    elif isinstance(w, AgentWorkload):
        rows = _quote_agent(w, ctx, skipped)
    else:
        rows = _quote_training(w, ctx, skipped)
    ranked = sorted(rows, key=lambda r: (not r.eligible, r.slo_met is None, r.usd_per_unit, r.offer_id))
    return Quote(w, tuple(ranked), tuple(skipped), crossover)
