"""A plan: solve the fleet MILP for some workloads, then explain it (binding constraints and what each costs,
the cheapest single-offer plan), sweep cost against carbon, or say what would make an infeasible one work."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from flopex.catalog import Catalog
from flopex.economics import EnergyTable
from flopex.perf import Efficiency
from flopex.plan._build import Inputs, build_inputs
from flopex.plan._milp import solve
from flopex.plan._model import Candidate, Options, Solution, effective_utilisation
from flopex.plan._spec import PlanSpec
from flopex.workloads import Workload

__all__ = ["PLAN_SCHEMA_VERSION", "Binding", "ParetoPoint", "Plan", "make_plan", "options_for", "pareto", "pareto_svg"]

PLAN_SCHEMA_VERSION = 1

_GROUP_TEXT = {
    "capacity": "offer capacity (instances available)",
    "power": "site power budgets",
    "carbon": "the carbon cap",
    "domains": "the minimum number of failure domains",
    "on_demand_floor": "the on-demand floor under spot",
    "zone_share": "the cap on spot traffic per zone",
    "unknown_power": "leaving out offers without published power",
}


def options_for(spec: PlanSpec, inputs: Inputs) -> Options:
    return Options(
        utilisation=spec.utilisation,
        carbon_price_usd_per_t=spec.carbon_price_usd_per_t,
        carbon_cap_g_per_hour=None if spec.carbon_cap_kg_per_hour is None else spec.carbon_cap_kg_per_hour * 1000,
        power_budget_kw=spec.power_budget_kw,
        offer_capacity=inputs.offer_capacity,
        min_domains={d.workload: spec.min_failure_domains for d in inputs.demands},
        domain=spec.failure_domain,
        on_demand_floor=spec.spot.on_demand_floor,
        max_zone_share=spec.spot.max_zone_share,
        recovery_s=spec.spot.recovery_s,
        whole=spec.whole_assignment,
        slice_factor=spec.slice_factor,
        time_limit_s=spec.time_limit_s,
        mip_gap=spec.mip_gap,
    )


@dataclass(frozen=True)
class Binding:
    group: str
    usd_per_hour_without: float | None  # None: still infeasible (or nothing to compare) without it
    saving: float | None
    detail: str = ""  # a text of its own (unknown_power: which offers are left out, and why)

    @property
    def text(self) -> str:
        return self.detail or _GROUP_TEXT[self.group]


@dataclass(frozen=True)
class Plan:
    spec: PlanSpec
    workloads: list[Workload]
    inputs: Inputs
    options: Options
    solution: Solution
    binding: list[Binding]
    single_offer_usd_per_hour: float | None
    single_offer: dict[str, str]  # workload -> candidate id of its cheapest single-offer fleet
    relaxations: list[Binding]  # for an infeasible plan: what dropping each constraint group gives

    def _cands(self) -> dict[str, Candidate]:
        return {c.id: c for c in self.inputs.candidates}

    def hosted_usd_per_hour(self, hosted_id: str, workload: str) -> float:
        """What one workload spends on one hosted API (an API shared by workloads is priced per workload,
        since each sends its own requests at its own prices per bucket)."""
        api = next(h for h in self.inputs.hosted if h.id == hosted_id and h.workload == workload)
        demand = next(d for d in self.inputs.demands if d.workload == workload)
        return sum(
            self.solution.routing.get((workload, b), {}).get(api.id, 0.0) * rate * 3600 * api.usd_per_request[b]
            for b, rate in enumerate(demand.rates)
        )

    def workload_usd_per_hour(self, name: str) -> float:
        cands = self._cands()
        own = sum(n * cands[c].usd_per_hour for c, n in self.solution.groups.items() if cands[c].workload == name)
        return own + sum(self.hosted_usd_per_hour(h.id, name) for h in self.inputs.hosted if h.workload == name)

    def warnings(self) -> list[str]:
        """What a reader of the plan must know before trusting its cost: a solve stopped at its time limit."""
        s = self.solution
        if s.status != "time_limit":
            return []
        better = (
            "how much cheaper a plan could be is unknown (HiGHS reported no bound)"
            if s.gap is None
            else f"a better plan may cost up to {s.gap:.1%} less (the remaining optimality gap; the target was "
            f"{self.options.mip_gap:.1%})"
        )
        return [
            f"the solver stopped at its time limit ({s.time_limit_s:,.0f} s) before proving this plan the cheapest: "
            f"{better}. To fix: raise the limit with --time-limit SECONDS, or time_limit_s in the plan file."
        ]

    def to_json(self) -> dict[str, Any]:
        s = self.solution
        cands = self._cands()
        return {
            "plan_schema_version": PLAN_SCHEMA_VERSION,
            "name": self.spec.name,
            "status": s.status,
            "message": s.message,
            "usd_per_hour": s.usd_per_hour,
            "usd_per_month": s.usd_per_hour * min(w.horizon_hours_per_month for w in self.workloads),
            "hosted_usd_per_hour": s.hosted_usd_per_hour,
            "energy_kwh_per_hour": s.energy_kwh_per_hour,
            "carbon_kg_per_hour": s.carbon_g_per_hour / 1000,
            "groups_without_energy_figures": sum(n for cid, n in s.groups.items() if not cands[cid].power_known),
            "warnings": self.warnings(),
            "solver": {
                "gap": s.gap,
                "bound": s.bound,
                "time_limit_s": s.time_limit_s,
                "stopped_at_time_limit": s.status == "time_limit",
                "seconds": s.seconds,
                "integer_variables": s.size[0],
                "continuous_variables": s.size[1],
                "constraints": s.size[2],
                "engine": "HiGHS (scipy.optimize.milp)",
            },  # fmt: skip
            "fleet": self._fleet_json(),
            "workloads": self._workloads_json(),
            "explanation": self._explanation_json(),
            "relaxations": [
                {"constraint": b.group, "text": b.text, "usd_per_hour": b.usd_per_hour_without}
                for b in self.relaxations
            ],  # fmt: skip
            "options": {
                "utilisation": self.options.utilisation,
                "carbon_price_usd_per_t": self.options.carbon_price_usd_per_t,
                "min_failure_domains": self.spec.min_failure_domains,
                "failure_domain": self.options.domain,
                "on_demand_floor": self.options.on_demand_floor,
                "max_zone_share": self.options.max_zone_share,
                "recovery_s": self.options.recovery_s,
                "whole_assignment": self.options.whole,
            },  # fmt: skip
            "skipped": self.inputs.skipped,
        }

    def _fleet_json(self) -> list[dict[str, Any]]:
        """One line per deployed candidate, dearest first, then one per (hosted API, workload) in use."""
        s = self.solution
        cands = self._cands()
        models = {w.name: w.model for w in self.workloads}
        fleet = []
        for cid, n in sorted(s.groups.items(), key=lambda kv: -kv[1] * cands[kv[0]].usd_per_hour):
            c = cands[cid]
            load = s.load.get(cid, 0.0)
            kw = n * c.idle_kw + (c.busy_kw - c.idle_kw) * load if c.power_known else None
            fleet.append({
                "candidate": cid, "workload": c.workload, "model": models[c.workload], "offer": c.offer,
                "precision": cid.split("|")[2], "config": c.label, "groups": n,
                "instances": n * c.instances, "spot": c.spot, "usd_per_hour": n * c.usd_per_hour,
                "utilisation": load / n, "slo_headroom": max(0.0, 1 - load / n),
                "power_kw": kw, "carbon_kg_per_hour": None if kw is None else kw * c.grid_g_per_kwh / 1000,
            })  # fmt: skip
        for h in self.inputs.hosted:  # one line per (API, workload): each workload pays its own requests
            usd = self.hosted_usd_per_hour(h.id, h.workload)
            if usd > 0:
                fleet.append({
                    "candidate": h.id, "workload": h.workload, "model": models[h.workload], "offer": h.id,
                    "config": "hosted API, per token",
                    "groups": 0, "instances": 0, "spot": False, "usd_per_hour": usd, "utilisation": None,
                    "slo_headroom": None, "power_kw": None, "carbon_kg_per_hour": None,
                })  # fmt: skip
        return fleet

    def _workloads_json(self) -> list[dict[str, Any]]:
        workloads = []
        for d in self.inputs.demands:
            usd = self.workload_usd_per_hour(d.workload)
            out_tokens = sum(r * o for r, o in zip(d.rates, self.inputs.output_tokens[d.workload], strict=True)) * 3600
            routing = [
                {"bucket": d.labels[b], "rate": d.rates[b], "unit": self.inputs.units[d.workload],
                 "shares": self.solution.routing.get((d.workload, b), {})}
                for b in range(len(d.rates))
            ]  # fmt: skip
            workloads.append({
                "name": d.workload, "usd_per_hour": usd,
                "usd_per_mtok_output": usd / out_tokens * 1e6 if out_tokens else None, "routing": routing,
            })  # fmt: skip
        return workloads

    def _explanation_json(self) -> dict[str, Any]:
        single = self.single_offer_usd_per_hour
        return {
            "binding": [
                {
                    "constraint": b.group,
                    "text": b.text,
                    "usd_per_hour_without": b.usd_per_hour_without,
                    "costs_usd_per_hour": b.saving,
                }
                for b in self.binding
            ],  # fmt: skip
            "single_offer_usd_per_hour": single,
            "single_offer": self.single_offer,
            "saving_vs_single_offer": None
            if single is None or not self.solution.feasible
            else 1 - self.solution.usd_per_hour / single,
        }


def _active(options: Options, inputs: Inputs) -> list[str]:
    active = []
    if options.offer_capacity:
        active.append("capacity")
    if options.power_budget_kw:
        active.append("power")
    if options.carbon_cap_g_per_hour is not None:
        active.append("carbon")
    if any(k > 1 for k in options.min_domains.values()):
        active.append("domains")
    if options.on_demand_floor > 0:
        active.append("on_demand_floor")
    if options.max_zone_share < 1:
        active.append("zone_share")
    return active


def _single_offer(inputs: Inputs, options: Options) -> tuple[float | None, dict[str, str]]:
    """Each workload on its cheapest single candidate that serves every bucket within its capacity."""
    total, chosen = 0.0, {}
    for d in inputs.demands:
        best: tuple[float, str] | None = None
        for c in inputs.candidates:
            if c.workload != d.workload or any(t <= 0 for r, t in zip(d.rates, c.capacity, strict=True) if r > 0):
                continue
            load = sum(r / t for r, t in zip(d.rates, c.capacity, strict=True) if r > 0)
            eff = effective_utilisation(c, options)
            if eff <= 0:
                continue
            groups = max(1, math.ceil(load / eff - 1e-9))
            cap = options.offer_capacity.get(c.offer)
            if cap is not None and groups * c.instances > cap:
                continue
            if best is None or groups * c.usd_per_hour < best[0]:
                best = (groups * c.usd_per_hour, c.id)
        if best is None:
            return None, {}
        total += best[0]
        chosen[d.workload] = best[1]
    return total, chosen


def _without(inputs: Inputs, options: Options, groups: frozenset[str], limit_s: float) -> Solution:
    quick = replace(options, disabled=options.disabled | groups, time_limit_s=limit_s)
    return solve(inputs.candidates, inputs.demands, quick, inputs.hosted)


def _excluders(inputs: Inputs, options: Options) -> dict[str, str]:
    """The constraint groups that leave offers without published power out of this plan (a carbon price
    cannot be switched off to explain a plan, so under one there is nothing to tell apart), each with why."""
    if options.carbon_price_usd_per_t > 0:
        return {}
    out = {}
    unknown = [c for c in inputs.candidates if not c.power_known]
    if options.carbon_cap_g_per_hour is not None and (unknown or inputs.hosted):
        out["carbon"] = "carbon is capped"
    if any(c.site in options.power_budget_kw for c in unknown):
        out["power"] = "a power budget covers their site"
    return out


def _cap_binds(solution: Solution, options: Options, without: Solution) -> bool:
    """The carbon cap binds where the plan's carbon is at the cap, or where the plan without it is cheaper
    than the solver's bound on this one (so the difference is no artefact of the gap)."""
    cap = options.carbon_cap_g_per_hour
    at_cap = cap is not None and solution.carbon_g_per_hour >= cap * (1 - 1e-4)
    return at_cap or (solution.bound is not None and without.objective < solution.bound - 1e-6)


def _explain(inputs: Inputs, options: Options, solution: Solution) -> tuple[list[Binding], list[Binding]]:
    """What each active constraint costs (a feasible plan) or what dropping it gives (an infeasible one), and
    what leaving out offers without published power costs, apart from the cap or budget that needs it."""
    excluders = _excluders(inputs, options)
    binding: list[Binding] = []
    relaxations: list[Binding] = []
    solved: dict[frozenset[str], Solution] = {}

    def without(*groups: str) -> Solution:
        key = frozenset(groups)
        if key not in solved:
            solved[key] = _without(inputs, options, key, max(1.0, solution.time_limit_s / 4))
        return solved[key]

    for group in _active(options, inputs):
        if not solution.feasible:  # dropping a cap or budget from the plan file also admits what it kept out
            other = without(group, "unknown_power") if group in excluders else without(group)
            relaxations.append(Binding(group, other.usd_per_hour if other.feasible else None, None))
            continue
        other = without(group)
        if not other.feasible or other.usd_per_hour >= solution.usd_per_hour - 1e-6:
            continue
        if group != "carbon" or _cap_binds(solution, options, other):
            binding.append(Binding(group, other.usd_per_hour, solution.usd_per_hour - other.usd_per_hour))
    if solution.feasible and excluders:
        kept, lifted = without(*excluders), without(*excluders, "unknown_power")
        if kept.feasible and lifted.feasible and lifted.usd_per_hour < kept.usd_per_hour - 1e-6:
            what = "offers without published power" + (
                " (and hosted APIs, which publish no energy)" if "carbon" in excluders and inputs.hosted else ""
            )
            text = f"{what} are excluded because {' and '.join(excluders.values())}"
            binding.append(Binding("unknown_power", lifted.usd_per_hour, kept.usd_per_hour - lifted.usd_per_hour, text))
    return binding, relaxations


def make_plan(
    spec: PlanSpec, workloads: list[Workload], catalog: Catalog, eff: Efficiency, energy: EnergyTable,
    *, explain: bool = True, inputs: Inputs | None = None,
) -> Plan:  # fmt: skip
    inputs = inputs or build_inputs(workloads, catalog, eff, energy, spec)
    options = options_for(spec, inputs)
    solution = solve(inputs.candidates, inputs.demands, options, inputs.hosted)
    binding, relaxations = _explain(inputs, options, solution) if explain else ([], [])
    single, chosen = _single_offer(inputs, options)
    return Plan(spec, workloads, inputs, options, solution, binding, single, chosen, relaxations)


@dataclass(frozen=True)
class ParetoPoint:
    carbon_price_usd_per_t: float
    usd_per_hour: float
    carbon_kg_per_hour: float


def pareto(plan: Plan, steps: int = 8) -> list[ParetoPoint]:
    """Cost against carbon: the cheapest plan (carbon priced at a token amount, so that accelerators and APIs
    without energy figures stay out), the lowest-carbon plan (a very high carbon price), and `steps` carbon
    caps between them; the points no other point beats on both axes."""
    points: list[ParetoPoint] = []

    def run(price: float, cap_g: float | None) -> Solution:
        options = replace(plan.options, carbon_price_usd_per_t=price, carbon_cap_g_per_hour=cap_g)
        s = solve(plan.inputs.candidates, plan.inputs.demands, options, plan.inputs.hosted)
        if s.feasible:
            points.append(ParetoPoint(price, s.usd_per_hour, s.carbon_g_per_hour / 1000))
        return s

    cheapest = run(1e-6, plan.options.carbon_cap_g_per_hour)
    greenest = run(1e6, plan.options.carbon_cap_g_per_hour)
    if cheapest.feasible and greenest.feasible and cheapest.carbon_g_per_hour > greenest.carbon_g_per_hour:
        lo, hi = greenest.carbon_g_per_hour, cheapest.carbon_g_per_hour
        for k in range(1, steps):
            run(1e-6, lo + (hi - lo) * k / steps)
    front = [
        p for p in points
        if not any((q.usd_per_hour <= p.usd_per_hour and q.carbon_kg_per_hour < p.carbon_kg_per_hour - 1e-9)
                   or (q.usd_per_hour < p.usd_per_hour - 1e-9 and q.carbon_kg_per_hour <= p.carbon_kg_per_hour)
                   for q in points)
    ]  # fmt: skip
    unique: dict[tuple[float, float], ParetoPoint] = {}
    for p in front:
        unique.setdefault((round(p.usd_per_hour, 4), round(p.carbon_kg_per_hour, 4)), p)
    return sorted(unique.values(), key=lambda p: p.carbon_kg_per_hour)


def pareto_svg(points: list[ParetoPoint], title: str) -> str:
    """A scatter of the frontier: carbon (kg/h) across, cost ($/h) up."""
    width, height, pad = 560, 360, 60
    xs = [p.carbon_kg_per_hour for p in points] or [0.0]
    ys = [p.usd_per_hour for p in points] or [0.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def sx(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - (v - y0) / (y1 - y0) * (height - 2 * pad)

    path = " ".join(f"{sx(p.carbon_kg_per_hour):.1f},{sy(p.usd_per_hour):.1f}" for p in points)
    dots = "".join(
        f'<circle cx="{sx(p.carbon_kg_per_hour):.1f}" cy="{sy(p.usd_per_hour):.1f}" r="4" fill="#2166ac"/>'
        f'<text x="{sx(p.carbon_kg_per_hour) + 6:.1f}" y="{sy(p.usd_per_hour) - 6:.1f}" font-size="10">'
        f"${p.usd_per_hour:,.2f}</text>"
        for p in points
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, sans-serif">'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="{width / 2}" y="24" font-size="14" text-anchor="middle" font-weight="bold">{title}</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>'
        f'<text x="{width / 2}" y="{height - 20}" font-size="12" text-anchor="middle">carbon, kgCO2e per hour '
        f"({x0:,.2f} to {x1:,.2f})</text>"
        f'<text x="18" y="{height / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 18 {height / 2})">'
        f"cost, $ per hour ({y0:,.2f} to {y1:,.2f})</text>"
        f'<polyline points="{path}" fill="none" stroke="#92c5de" stroke-width="2"/>{dots}</svg>'
    )
