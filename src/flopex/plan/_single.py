"""The cheapest single-offer fleet under a plan's own rules: what a plan's headline compares it with.

Per workload, the cheapest plan that runs on one offer, solved by the same MILP (`solve`) with the candidates
restricted to that offer and the plan's options unchanged: its SLOs, utilisation, failure domains, on-demand
floor, zone share, capacities, power budgets, carbon cap and price. An offer is one catalog offer id
(`provider/region[/zone]/instance_type/market`) in any of its configurations (precision, instances per
group), or one hosted API. Spot and on-demand of the same instance type are two offers: the catalog lists
them apart, with their own prices, capacities and interruptions, and the on-demand floor is a rule about
mixing the two, which a comparison with one offer must not grant for free. So a spot offer alone never meets a
positive floor, nor a zone cap below 1, and one offer (or hosted API) lies in one failure domain, so none
meets `min_failure_domains` > 1: the baseline then says so, and a second one compares the plan without that
rule with the cheapest single offer under the others.

Offers are tried cheapest lower bound first (each bucket at the offer's lowest cost per unit of traffic, as
if groups were divisible), and the search stops where the next bound is no lower than the best plan found,
so a few small solves decide it. Workloads that share an offer's capacity, a site's power budget or the
carbon cap are checked together: where their cheapest offers do not fit together, each workload in turn gets
the cheapest offer that fits in what the ones before it left (said so, since a cheaper pairing may exist).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from flopex.plan._build import Inputs
from flopex.plan._milp import solve
from flopex.plan._model import (
    Candidate,
    Demand,
    Hosted,
    Options,
    Solution,
    effective_utilisation,
    hosted_usable,
    usable,
)

__all__ = ["Choice", "SingleOffer", "single_offer_baselines"]

_UNSERVED = "not shown to meet the SLO on every bucket"
_BROKEN = {
    "capacity": "with too few instances (offer capacity)",
    "power": "over a site's power budget",
    "carbon": "over the carbon cap",
}


@dataclass(frozen=True)
class Choice:
    """One workload's cheapest single offer, or why none meets the rules."""

    workload: str
    offer: str | None  # a catalog offer id or a hosted API id; None where no single offer meets the rules
    usd_per_hour: float | None
    reason: str = ""  # where offer is None: why, to follow the workload's name ("needs 2 failure domains ...")


@dataclass(frozen=True)
class SingleOffer:
    """The cheapest single-offer fleet under a plan's rules, less `left_out`, beside the plan under the same."""

    choices: tuple[Choice, ...]
    plan_usd_per_hour: float  # the plan under the same rules (this plan where nothing is left out)
    left_out: tuple[str, ...] = ()  # constraint groups left out of both sides (() = all of the plan's rules)
    in_turn: bool = False  # offers picked one workload at a time, as they share a capacity, budget or cap

    @property
    def usd_per_hour(self) -> float | None:
        costs = [c.usd_per_hour for c in self.choices]
        return None if any(v is None for v in costs) else sum(v for v in costs if v is not None)

    @property
    def saving(self) -> float | None:
        """1 - plan / single-offer fleet: at least 0 up to the solver's gap, since the single-offer fleet is
        itself a plan under the same rules."""
        single = self.usd_per_hour
        return None if single is None or single <= 0 else 1 - self.plan_usd_per_hour / single

    @property
    def reason(self) -> str:
        """Why no single offer meets the rules, each workload named (or 'each workload' where all share it)."""
        failed = [c for c in self.choices if c.offer is None]
        if len(failed) > 1 and len(failed) == len(self.choices) and len({c.reason for c in failed}) == 1:
            return f"each workload {failed[0].reason}"
        return "; ".join(f"{c.workload} {c.reason}" for c in failed)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules_left_out": list(self.left_out),
            "usd_per_hour": self.usd_per_hour,
            "plan_usd_per_hour": self.plan_usd_per_hour,
            "saving": self.saving,
            "reason": self.reason or None,
            "picked_one_workload_at_a_time": self.in_turn,
            "workloads": [
                {"workload": c.workload, "offer": c.offer, "usd_per_hour": c.usd_per_hour, "reason": c.reason or None}
                for c in self.choices
            ],
        }


def single_offer_baselines(
    inputs: Inputs, options: Options, plan: Solution, without: Callable[[str], Solution], limit_s: float
) -> list[SingleOffer]:
    """The baseline under the plan's own rules; and where only the failure-domain rule rules single offers
    out, a second without it, beside the plan without it (`without("domains")`, the re-solve that also says
    what the rule costs)."""
    quick = replace(options, time_limit_s=limit_s)
    choices, in_turn = _fleet(inputs, quick)
    out = [SingleOffer(tuple(choices), plan.usd_per_hour, (), in_turn)]
    if any(_needs_domains(quick, c.workload) for c in choices):
        relaxed = replace(quick, disabled=quick.disabled | {"domains"})
        other = without("domains")
        if other.feasible:
            choices, in_turn = _fleet(inputs, relaxed)
            out.append(SingleOffer(tuple(choices), other.usd_per_hour, ("domains",), in_turn))
    return out


def _needs_domains(options: Options, workload: str) -> bool:
    return "domains" not in options.disabled and options.min_domains.get(workload, 1) > 1


def _fleet(inputs: Inputs, options: Options) -> tuple[list[Choice], bool]:
    """Each workload's cheapest single offer; where they do not fit together in the limits the workloads share,
    each in turn within what the ones before it left."""
    picks = [_cheapest(inputs, options, d) for d in inputs.demands]
    solved = [s for _, s in picks if s is not None]
    if len(solved) < 2 or _fits(inputs, options, solved):
        return [c for c, _ in picks], False
    choices, left = [], options
    for d in inputs.demands:
        choice, solution = _cheapest(inputs, left, d)
        choices.append(choice)
        if solution is not None:
            left = _less(inputs, left, solution)
    return choices, True


def _cheapest(inputs: Inputs, options: Options, demand: Demand) -> tuple[Choice, Solution | None]:
    """The workload's cheapest single offer under `options` (by the MILP's objective), or why none qualifies."""
    w = demand.workload
    if _needs_domains(options, w):
        k = options.min_domains[w]
        kind = options.domain
        return Choice(w, None, None, f"needs {k} failure domains ({kind}s), and one offer lies in one {kind}"), None
    tries, why = _tries(inputs, options, demand)
    best: tuple[str, Solution] | None = None
    failed: list[tuple[list[Candidate], list[Hosted]]] = []
    for bound, offer, cands, apis in tries:
        if best is not None and bound >= best[1].objective - 1e-9:
            break
        s = solve(cands, [demand], options, apis)
        if not s.feasible:
            failed.append((cands, apis))
        elif best is None or s.objective < best[1].objective:
            best = (offer, s)
    if best is not None:
        return Choice(w, best[0], best[1].usd_per_hour), best[1]
    for cands, apis in failed:
        why[_broken(cands, apis, demand, options)] += 1
    return Choice(w, None, None, _none_meets(why)), None


def _tries(
    inputs: Inputs, options: Options, demand: Demand
) -> tuple[list[tuple[float, str, list[Candidate], list[Hosted]]], Counter[str]]:
    """The offers worth solving, cheapest lower bound first, and a count of the others by the rule they break."""
    by_offer: dict[str, list[Candidate]] = defaultdict(list)
    for c in inputs.candidates:
        if c.workload == demand.workload and usable(c, options) and effective_utilisation(c, options) > 0:
            by_offer[c.offer].append(c)
    tries: list[tuple[float, str, list[Candidate], list[Hosted]]] = []
    why: Counter[str] = Counter()
    for offer, cands in by_offer.items():
        bound = _bound(cands, demand, options)
        broken = _spot_rule(options) if cands[0].spot else None
        if broken or bound is None:
            why[broken or _UNSERVED] += 1
        else:
            tries.append((bound, offer, cands, []))
    for h in inputs.hosted:
        if h.workload == demand.workload and hosted_usable(h, options):
            served = all(h.serves_bucket(b) for b, rate in enumerate(demand.rates) if rate > 0)
            if served:
                usd = sum(rate * 3600 * h.usd_per_request[b] for b, rate in enumerate(demand.rates))
                tries.append((usd, h.id, [], [h]))
            else:
                why[_UNSERVED] += 1
    return sorted(tries, key=lambda t: (t[0], t[1])), why


def _bound(cands: list[Candidate], demand: Demand, options: Options) -> float | None:
    """No plan on these candidates costs less than each bucket at their lowest $ per unit of traffic (groups
    taken as divisible), nor less than their cheapest group; None where some bucket has no candidate that meets
    its SLO."""
    total = 0.0
    for b, rate in enumerate(demand.rates):
        if rate <= 0:
            continue
        unit = [
            c.usd_per_hour / (effective_utilisation(c, options) * c.capacity[b]) for c in cands if c.capacity[b] > 0
        ]
        if not unit:
            return None
        total += rate * min(unit)
    return max(total, min(c.usd_per_hour for c in cands))


def _spot_rule(options: Options) -> str | None:
    """The spot rule one spot offer alone breaks: all of its traffic is spot, and all of it in one zone."""
    if options.on_demand_floor > 0 and "on_demand_floor" not in options.disabled:
        return f"spot under the {options.on_demand_floor:.0%} on-demand floor"
    if options.max_zone_share < 1 and "zone_share" not in options.disabled:
        return f"spot in one zone, where a zone may carry {options.max_zone_share:.0%} of the traffic"
    return None


def _broken(cands: list[Candidate], apis: list[Hosted], demand: Demand, options: Options) -> str:
    """The limit an offer with no plan of its own breaks: the first whose removal gives it one."""
    active = {
        "capacity": bool(options.offer_capacity),
        "power": bool(options.power_budget_kw),
        "carbon": options.carbon_cap_g_per_hour is not None,
    }
    for group, on in active.items():
        if on and group not in options.disabled:
            if solve(cands, [demand], replace(options, disabled=options.disabled | {group}), apis).feasible:
                return _BROKEN[group]
    return "with no plan within the rules"


def _none_meets(why: Counter[str]) -> str:
    total = sum(why.values())
    if not total:
        return "has no offer to run on"
    parts = ", ".join(f"{n} {reason}" for reason, n in why.most_common())
    return f"has none that meets them: of its {total} offer{'s' if total > 1 else ''}, {parts}"


def _usage(inputs: Inputs, solutions: list[Solution]) -> tuple[dict[str, int], dict[str, float], float]:
    """Instances per offer, kW at full load per site and carbon (g/h) of some plans together: what the rows on
    offer capacity, power budgets and the carbon cap count."""
    cands = {c.id: c for c in inputs.candidates}
    instances: dict[str, int] = defaultdict(int)
    kw: dict[str, float] = defaultdict(float)
    for s in solutions:
        for cid, n in s.groups.items():
            instances[cands[cid].offer] += n * cands[cid].instances
            kw[cands[cid].site] += n * cands[cid].busy_kw
    return instances, kw, sum(s.carbon_g_per_hour for s in solutions)


def _fits(inputs: Inputs, options: Options, solutions: list[Solution]) -> bool:
    """Whether the workloads' plans, each made alone, keep together within the limits they share."""
    instances, kw, carbon = _usage(inputs, solutions)
    on = {g: g not in options.disabled for g in ("capacity", "power", "carbon")}
    cap = options.carbon_cap_g_per_hour
    return (
        not (on["capacity"] and any(n > options.offer_capacity.get(o, n) for o, n in instances.items()))
        and not (on["power"] and any(v > options.power_budget_kw.get(s, v) + 1e-9 for s, v in kw.items()))
        and not (on["carbon"] and cap is not None and carbon > cap * (1 + 1e-9))
    )


def _less(inputs: Inputs, options: Options, solution: Solution) -> Options:
    """The limits left to the next workloads once one workload's plan has taken its share."""
    instances, kw, carbon = _usage(inputs, [solution])
    cap = options.carbon_cap_g_per_hour
    return replace(
        options,
        offer_capacity={o: max(0, n - instances.get(o, 0)) for o, n in options.offer_capacity.items()},
        power_budget_kw={s: max(0.0, b - kw.get(s, 0.0)) for s, b in options.power_budget_kw.items()},
        carbon_cap_g_per_hour=None if cap is None else max(0.0, cap - carbon),
    )
