"""From workloads and the catalog to the planner's candidates, demands and hosted options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flopex.catalog import Accelerator, Catalog, HostedOffer, Offer, Precision
from flopex.economics import (
    GROUP_SIZES,
    EnergyTable,
    agent_fit,
    agent_retention,
    chat_fit,
    offer_shapes,
    power_w,
    video_fit,
)
from flopex.errors import PlanError, did_you_mean
from flopex.models import resolve_model
from flopex.perf import Efficiency, hosted_slo, load_bands
from flopex.plan._model import Candidate, Demand, Hosted
from flopex.plan._spec import HostedCarbon, PlanSpec
from flopex.workloads import AgentWorkload, ChatWorkload, TokenSlo, VideoWorkload, Workload

__all__ = ["Inputs", "build_inputs"]


@dataclass(frozen=True)
class Inputs:
    candidates: list[Candidate]
    demands: list[Demand]
    hosted: list[Hosted]
    offer_capacity: dict[str, int]
    units: dict[str, str]  # workload -> what a bucket's rate counts
    output_tokens: dict[str, tuple[float, ...]]  # workload -> output tokens per unit, per bucket
    skipped: list[str]


@dataclass(frozen=True)
class _Fit:
    capacity: tuple[float, ...]  # units/s per bucket for one group
    activity: float
    precision: Precision
    label: str
    engine: str | None = None
    layout: tuple[int, int, int] = (0, 0, 0)  # tensor parallel, pipeline parallel, model replicas per group


def _demand(w: Workload) -> tuple[Demand, str, tuple[float, ...]]:
    if isinstance(w, ChatWorkload):
        buckets = w.traffic.buckets()
        rate = w.traffic.requests_per_s or 0.0
        labels = tuple(f"{b.input_tokens}/{b.output_tokens}" for b in buckets)
        return (
            Demand(w.name, tuple(rate * b.weight for b in buckets), labels),
            "requests/s",
            tuple(float(b.output_tokens) for b in buckets),
        )
    if isinstance(w, VideoWorkload):
        return Demand(w.name, (w.traffic.videos_per_hour / 3600,), ("video",)), "videos/s", (0.0,)
    if isinstance(w, AgentWorkload):
        return Demand(w.name, (w.traffic.concurrent_sessions,), ("session",)), "sessions", (0.0,)
    raise PlanError(
        f"workload {w.name} is a {w.kind} run, not traffic to serve; the planner sizes serving fleets. "
        f"To fix: quote it with `flopex quote` instead."
    )


@dataclass(frozen=True)
class Margins:
    """How much worse than predicted a plan at `spec.confidence` assumes each figure may be (all 1 without)."""

    throughput: float = 1.0
    ttft: float = 1.0
    tpot: float = 1.0
    video: float = 1.0

    @staticmethod
    def of(spec: PlanSpec) -> Margins:
        if spec.confidence is None:
            return Margins()
        bands, c = load_bands(), spec.confidence

        def factor(regime: str) -> float:
            band = bands[regime]
            return 1.0 if band is None else band.pessimistic(c)

        return Margins(factor("LLM throughput"), factor("LLM TTFT"), factor("LLM TPOT"), factor("video"))

    def tightened(self, slo: TokenSlo) -> TokenSlo:
        """The SLO a prediction must meet for the latency, that much worse, to meet `slo`."""
        if self.ttft == self.tpot == 1.0:
            return slo
        if slo.e2e_p99_s is not None:
            return TokenSlo(e2e_p99_s=slo.e2e_p99_s / max(self.ttft, self.tpot))
        ttft = None if slo.ttft_p99_s is None else slo.ttft_p99_s / self.ttft
        tpot = None if slo.tpot_p99_s is None else slo.tpot_p99_s / self.tpot
        return TokenSlo(ttft_p99_s=ttft, tpot_p99_s=tpot)


def _fitter(w: Workload, eff: Efficiency, spec: PlanSpec) -> Callable[[Accelerator, int, int, Precision], _Fit]:
    """Capacity of one group, per bucket, at the workload's SLO (0 where the SLO cannot be met); at
    `spec.confidence`, at the model's pessimistic quantile (capacity lower and latency higher than predicted)."""
    profiles = [p for p in spec.profiles if p.workload == w.name]
    margins = Margins.of(spec)

    def chat(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> _Fit:
        assert isinstance(w, ChatWorkload)
        fit = chat_fit(w.model_copy(update={"slo": margins.tightened(w.slo)}), acc, per_instance, group, precision,
                       eff)  # fmt: skip
        caps = []
        for b, p in zip(w.traffic.buckets(), fit.predictions, strict=True):
            measured = next(
                (m for m in profiles if m.accelerator.lower() == acc.id.lower() and m.precision == precision
                 and m.accelerators == per_instance * group and (m.input_tokens, m.output_tokens)
                 == (b.input_tokens, b.output_tokens)),
                None,
            )  # fmt: skip
            modelled = p.requests_per_s / margins.throughput if p.slo_met else 0.0
            caps.append(measured.requests_per_s if measured else modelled)
        first = fit.predictions[0]
        layout = first.layout
        label = f"{acc.id} x{per_instance * group} {precision} TP{layout.tensor_parallel}"
        shape = (layout.tensor_parallel, layout.pipeline_parallel, layout.replicas)
        return _Fit(tuple(caps), fit.activity, precision, label, first.engine, shape)

    def video(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> _Fit:
        assert isinstance(w, VideoWorkload)
        p = video_fit(w, acc, per_instance, precision, eff)
        seconds = p.seconds_per_video * margins.video
        met = w.slo.max_seconds_per_video is None or seconds <= w.slo.max_seconds_per_video
        label = f"{acc.id} x{per_instance} {precision} SP{p.sequence_parallel}"
        return _Fit((p.videos_per_hour / 3600 / margins.video if met else 0.0,), p.mfu, precision, label)

    def agent(acc: Accelerator, per_instance: int, group: int, precision: Precision) -> _Fit:
        assert isinstance(w, AgentWorkload)
        session = agent_fit(w, acc, per_instance, group, precision, eff)
        cost = session.costs[agent_retention(w, session)]
        sessions = per_instance * group * 3600 / cost.accelerator_seconds if session.serving.slo_met else 0.0
        serving = session.serving
        layout = serving.layout
        label = f"{acc.id} x{per_instance * group} {precision} TP{layout.tensor_parallel}"
        activity = max(serving.compute_utilization, serving.memory_utilization)
        shape = (layout.tensor_parallel, layout.pipeline_parallel, layout.replicas)
        return _Fit((sessions,), activity, precision, label, serving.engine, shape)

    return {"chat": chat, "completion": chat, "video": video, "agent": agent}[w.kind]


def _carbon_factor(h: HostedOffer, spec: PlanSpec) -> HostedCarbon | None:
    """The plan's carbon factor for a hosted API: its own, else its provider's; None where the plan gives none."""
    factors = {k.lower(): v for k, v in spec.hosted_carbon.items()}
    return factors.get(h.id.lower()) or factors.get(h.provider.lower())


def _hosted(w: ChatWorkload, catalog: Catalog, spec: PlanSpec) -> tuple[list[Hosted], list[str]]:
    """Hosted APIs of the model, each for the buckets where what its provider publishes shows it meets the SLO
    (`hosted_slo`: a figure that is not published is unknown, never met), with the plan's carbon factor where it
    gives one; and one line per API left out (of some buckets or all), or kept out by a carbon cap or price for
    want of a factor, saying why."""
    c = w.constraints
    if c.jurisdictions or c.regions or (c.markets and "on_demand" not in c.markets):
        return [], []
    model = resolve_model(w.model).id
    buckets = w.traffic.buckets()
    out, skipped = [], []
    for h in catalog.hosted:
        if h.model != model or (c.providers and h.provider not in {p.lower() for p in c.providers}):
            continue
        verdicts = [hosted_slo(h, w.slo, b.output_tokens) for b in buckets]
        why = [None if met is True else text for met, text in verdicts]  # unknown is not met
        if all(why):
            skipped.append(f"{w.name} on hosted API {h.id}: {why[0]}")
            continue
        if any(why):
            failed = ", ".join(f"{b.input_tokens}/{b.output_tokens}" for b, y in zip(buckets, why, strict=True) if y)
            skipped.append(f"{w.name} on hosted API {h.id}: left out of buckets {failed}: {next(y for y in why if y)}")
        prices = tuple((b.input_tokens * h.input_usd_per_mtok + b.output_tokens * h.output_usd_per_mtok) / 1e6
                       for b in buckets)  # fmt: skip
        factor = _carbon_factor(h, spec)
        carbon = None if factor is None else tuple(factor.gco2e_per_1k_output_tokens * b.output_tokens / 1000
                                                   for b in buckets)  # fmt: skip
        if carbon is None and (spec.carbon_cap_kg_per_hour is not None or spec.carbon_price_usd_per_t > 0):
            how = "capped" if spec.carbon_cap_kg_per_hour is not None else "priced"
            skipped.append(
                f"{w.name} on hosted API {h.id}: left out because carbon is {how} and its carbon is unknown (hosted "
                f"APIs publish none). To fix: give it a factor under hosted_carbon in the plan file."
            )
        out.append(Hosted(h.id, w.name, prices, carbon, tuple(y is None for y in why)))
    return out, skipped


def _check_hosted_carbon(spec: PlanSpec, catalog: Catalog) -> None:
    """Every key of `hosted_carbon` names a hosted API or a provider of one."""
    known = sorted({h.id for h in catalog.hosted} | {h.provider for h in catalog.hosted})
    for key in spec.hosted_carbon:
        if key.lower() not in known:
            raise PlanError(
                f"hosted_carbon: {key!r} is neither a hosted API nor a provider of one.{did_you_mean(key, known)} "
                "To fix: use an id from `flopex catalog hosted` (provider/model) or a provider."
            )


def build_inputs(
    workloads: list[Workload], catalog: Catalog, eff: Efficiency, energy: EnergyTable, spec: PlanSpec
) -> Inputs:
    """Every (workload, offer, precision) on the fewest instances that hold the model, with its capacity per
    bucket, cost per group, power and grid; offers in a sunk-cost market cost nothing up to their capacity."""
    candidates: list[Candidate] = []
    demands: list[Demand] = []
    hosted: list[Hosted] = []
    units: dict[str, str] = {}
    outputs: dict[str, tuple[float, ...]] = {}
    capacity: dict[str, int] = {}
    skipped: list[str] = []
    _check_hosted_carbon(spec, catalog)
    for w in workloads:
        demand, unit, out_tokens = _demand(w)
        demands.append(demand)
        units[w.name] = unit
        outputs[w.name] = out_tokens
        fitter = _fitter(w, eff, spec)
        groups = (1,) if isinstance(w, VideoWorkload) else GROUP_SIZES
        for offer, shapes in offer_shapes(w, catalog, fitter, groups):
            for s in shapes:
                if s.error is not None:
                    skipped.append(f"{w.name} on {offer.id} at {s.precision}: {s.error}")
                elif s.fit is not None:
                    candidates.append(_candidate(w, offer, s.accelerator, s.group, s.fit, catalog, energy, spec))
            if offer.capacity is not None:
                capacity[offer.id] = offer.capacity
        if isinstance(w, ChatWorkload):
            apis, left_out = _hosted(w, catalog, spec)
            hosted += apis
            skipped += left_out
    sunk_without_capacity = [c for c in candidates if c.usd_per_hour == 0 and c.offer not in capacity]
    if sunk_without_capacity:
        raise PlanError(
            f"offer {sunk_without_capacity[0].offer} is in a sunk-cost market but has no capacity in the catalog, "
            "so it would be free without limit. To fix: give the offer a capacity, or drop its market from sunk_cost."
        )
    return Inputs(candidates, demands, hosted, capacity, units, outputs, skipped)


def _candidate(
    w: Workload, offer: Offer, acc: Accelerator, group: int, fit: _Fit, catalog: Catalog, energy: EnergyTable,
    spec: PlanSpec,
) -> Candidate:  # fmt: skip
    region = catalog.regions.resolve(offer.provider, offer.region)
    grid = catalog.regions.grid(region).gco2e_per_kwh
    count = offer.accelerator_count * group
    if acc.tdp_w is None:
        idle_kw = busy_kw = 0.0
    else:
        idle_chip, host = power_w(acc, 0.0, energy)
        busy_chip, _ = power_w(acc, fit.activity, energy)
        idle_kw = (idle_chip + host) * count * region.pue / 1000
        busy_kw = (busy_chip + host) * count * region.pue / 1000
    sunk = offer.market in spec.sunk_cost
    spot = offer.market == "spot"
    return Candidate(
        id=f"{w.name}|{offer.id}|{fit.precision}|x{group}",
        workload=w.name,
        offer=offer.id,
        label=fit.label,
        usd_per_hour=0.0 if sunk else group * offer.price_usd_per_hour,
        capacity=fit.capacity,
        instances=group,
        spot=spot,
        zone=f"{offer.provider}/{offer.region}/{offer.zone or '-'}",
        region=offer.region,
        provider=offer.provider,
        site=f"{offer.provider}/{offer.region}",
        idle_kw=idle_kw,
        busy_kw=busy_kw,
        grid_g_per_kwh=grid,
        interruption_rate=(
            offer.interruption_rate if offer.interruption_rate is not None else spec.spot.interruption_rate
        )
        if spot
        else 0.0,
        power_known=acc.tdp_w is not None,
        precision=fit.precision,
        accelerator=acc.id,
        accelerators=count,
        engine=fit.engine,
        layout=fit.layout,
        market=offer.market,
    )
