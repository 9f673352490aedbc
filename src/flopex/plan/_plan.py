"""A plan: solve the fleet MILP for some workloads, then explain it (binding constraints and what each costs,
the cheapest single-offer fleet under the same rules), sweep cost against carbon (`_pareto.py`), or say what
would make an infeasible one work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from flopex.catalog import Catalog
from flopex.economics import EnergyTable
from flopex.perf import Efficiency
from flopex.plan._build import Inputs, build_inputs
from flopex.plan._milp import solve
from flopex.plan._model import Candidate, Options, Solution
from flopex.plan._pareto import ParetoPoint, pareto, pareto_svg
from flopex.plan._single import SingleOffer, single_offer_baselines
from flopex.plan._spec import PlanSpec
from flopex.workloads import Workload

__all__ = ["Binding", "ParetoPoint", "Plan", "make_plan", "options_for", "pareto", "pareto_svg"]

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
    # the cheapest single-offer fleet under the plan's rules, then (where only the failure-domain rule rules
    # single offers out) without that rule; () where the plan is not explained or not feasible
    single_offer: tuple[SingleOffer, ...]
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

    def _explanation_json(self) -> dict[str, Any]:
        """What each binding constraint costs, and the cheapest single-offer fleet under the plan's rules (or why
        none meets them, and then the same comparison without the failure-domain rule)."""
        same = next((b for b in self.single_offer if not b.left_out), None)
        relaxed = next((b for b in self.single_offer if b.left_out == ("domains",)), None)
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
            "single_offer_same_rules": None if same is None else same.to_json(),
            "single_offer_without_domains": None if relaxed is None else relaxed.to_json(),
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


def _resolver(inputs: Inputs, options: Options, limit_s: float) -> Callable[..., Solution]:
    """The plan re-solved without some constraint groups, each set solved once (the explanation and the
    single-offer comparison share them)."""
    solved: dict[frozenset[str], Solution] = {}

    def without(*groups: str) -> Solution:
        key = frozenset(groups)
        if key not in solved:
            solved[key] = _without(inputs, options, key, limit_s)
        return solved[key]

    return without


def _explain(
    inputs: Inputs, options: Options, solution: Solution, without: Callable[..., Solution]
) -> tuple[list[Binding], list[Binding]]:
    """What each active constraint costs (a feasible plan) or what dropping it gives (an infeasible one), and
    what leaving out offers without published power costs, apart from the cap or budget that needs it."""
    excluders = _excluders(inputs, options)
    binding: list[Binding] = []
    relaxations: list[Binding] = []
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
    """The plan, solved; explained (what each constraint costs, the cheapest single-offer fleet under the same
    rules, or for an infeasible plan what dropping each constraint gives) unless `explain` is False."""
    inputs = inputs or build_inputs(workloads, catalog, eff, energy, spec)
    options = options_for(spec, inputs)
    solution = solve(inputs.candidates, inputs.demands, options, inputs.hosted)
    if not explain:
        return Plan(spec, workloads, inputs, options, solution, [], (), [])
    limit_s = max(1.0, solution.time_limit_s / 4)  # the re-solves that explain a plan get a quarter of its limit
    without = _resolver(inputs, options, limit_s)
    binding, relaxations = _explain(inputs, options, solution, without)
    single: tuple[SingleOffer, ...] = ()
    if solution.feasible:
        single = tuple(single_offer_baselines(inputs, options, solution, without, limit_s))
    return Plan(spec, workloads, inputs, options, solution, binding, single, relaxations)
