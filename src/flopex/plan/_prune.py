"""Pruning the planner's candidates: drop those a cheaper one can always replace in an optimal plan.

**Classes.** Candidates of one workload with the same capacities, group size, power, interruption rate and
spot flag (and the same grid where carbon counts, the same site under a power budget) form a class: any
member can take another's groups and traffic, and every row of the MILP but three sees no difference. The
three are price, the failure-domain minimum (a workload needs groups in k domains) and, for spot, the cap
on a workload's spot traffic per zone (at most cap x T in any zone, T its total rate). Offers with limited
capacity are kept as they are. A member's *cell* is its (zone, domain); its *rep* is the cell's cheapest
member, and cells are ranked by their reps' (price, id). Kept per class:

- Kd: the rep of each of the k cheapest domains (the first rep seen in each domain, down the ranking);
- Kz: the reps of the m first zones down the ranking, where m = 1 unless the zone cap can bind this class.

The cap can bind when the class is spot and the workload's spot traffic may exceed cap x T; the most spot
traffic is S = (1 - on-demand floor) x T. Then m = ceil((S - G) / (cap x T - G)), where G is the most
traffic one group can carry (the fractional knapsack of its effective utilisation over the workload's
buckets, each at most its own rate). Every cell is kept (m = all) where G >= cap x T, under whole-slice
assignment, or where some zone of the workload's spot candidates lies in two domains.

**Proof** that an optimal plan P using only kept members exists. Take any optimal P, and a member a of a
class that has groups (y_a >= 1) but is not kept; D is the set of domains where the workload has groups.
Each step below moves groups with their traffic from a to kept members no dearer than a, keeps every row
satisfied and lowers the groups on unkept members; repeat until none is left. (If a member then holds more
groups than its load needs, drop the surplus: that only makes the plan cheaper.) Where every cell is kept,
step 1 always applies; otherwise each zone lies in one domain, so a cell is a zone.

1. a's cell has a kept rep b: move all of a to b. Same zone and domain, p_b <= p_a: nothing else changes.
2. Otherwise, a's domain is *critical* if the workload needs k >= 2 domains, only a uses a's domain and
   |D| = k. Then move all of a to a kept b whose domain only a uses, or none does: the rep of a's own
   domain if kept, else one of the k domain reps of Kd (all no dearer than a, since a's domain is not among
   the k cheapest), one of which lies outside the k - 1 domains of D other than a's. D keeps k domains.
   Where the zone cap applies, b's zone is empty (it lies in b's domain, which holds no group but a's, and
   a is in another zone, as a's zone has no kept rep), so it can take a's traffic, which a's own zone
   carried within the cap.
3. Otherwise, where the zone cap cannot bind the class (m = 1: not spot, no cap, or S <= cap x T, so that
   no zone ever carries more than its cap), move all of a to the class's cheapest member: D loses at most
   a's domain, which is not critical.
4. Otherwise a's zone is not among the m first (it has no kept rep), so the m zones of Kz are all no
   dearer than a, and none is a's. Move one group's worth of a: one group and tau = t_a / y_a of its
   traffic, in proportion over its slices (the load per group stays within the effective utilisation, and
   tau <= G). A zone of Kz with load L <= cap x T - tau takes it. One exists: if all m zones had L > cap x
   T - tau, their sum would exceed m (cap x T - tau) >= S - tau (by the choice of m, since (S - tau) /
   (cap x T - tau) grows with tau), but they carry at most S less the tau still in a's zone. D only grows
   until a's last group leaves, and a's domain was not critical.

A real catalog sells a few dozen instance shapes in many places, so this leaves a few candidates per shape
and, for spot under a zone cap, a few zones more.
"""

from __future__ import annotations

import math
from collections import defaultdict

from flopex.plan._model import Candidate, Demand, Options, carbons, effective_utilisation

__all__ = ["prune"]


def prune(candidates: list[Candidate], options: Options, demands: list[Demand]) -> list[Candidate]:
    """The candidates an optimal plan may need (see the module docstring for the rule and its proof)."""
    carbon = carbons(options)
    by_workload = {d.workload: d for d in demands}
    untidy = _zones_across_domains(candidates, options)
    classes: dict[tuple[object, ...], list[Candidate]] = defaultdict(list)
    kept: list[Candidate] = []
    for c in candidates:
        if c.offer in options.offer_capacity:
            kept.append(c)
            continue
        key: tuple[object, ...] = (c.workload, c.capacity, c.instances, c.spot, c.idle_kw, c.busy_kw)
        key += (c.interruption_rate,)
        if carbon:
            key += (c.grid_g_per_kwh,)
        if c.site in options.power_budget_kw:
            key += (c.site,)
        classes[key].append(c)
    for members in classes.values():
        w = members[0].workload
        zones = None if w in untidy else _zones_needed(members[0], options, by_workload.get(w))
        kept += _kept(members, options, zones)
    return kept


def _kept(members: list[Candidate], options: Options, zones: int | None) -> list[Candidate]:
    """Kd and Kz of one class: the reps of the k cheapest domains and of the `zones` cheapest zones (every
    zone where None)."""
    k = options.min_domains.get(members[0].workload, 1) if "domains" not in options.disabled else 1
    reps: dict[tuple[str, str], Candidate] = {}
    for c in sorted(members, key=lambda c: (c.usd_per_hour, c.id)):
        reps.setdefault((c.zone, c.domain(options.domain)), c)
    domains: set[str] = set()
    seen_zones: set[str] = set()
    out = []
    for (zone, domain), c in reps.items():  # in rank order
        in_kd = domain not in domains and len(domains) < max(k, 1)
        in_kz = zones is None or (zone not in seen_zones and len(seen_zones) < zones)
        if in_kd:
            domains.add(domain)
        if in_kz:
            seen_zones.add(zone)
        if in_kd or in_kz:
            out.append(c)
    return out


def _zones_needed(c: Candidate, options: Options, demand: Demand | None) -> int | None:
    """m for the class of c: 1 where the zone cap cannot bind it, None where every zone must stay."""
    if not c.spot or demand is None or "zone_share" in options.disabled or options.max_zone_share >= 1:
        return 1
    total = sum(demand.rates)
    floor = options.on_demand_floor if "on_demand_floor" not in options.disabled else 0.0
    most_spot = (1 - floor) * total
    cap = options.max_zone_share * total
    if most_spot <= cap:
        return 1
    if options.whole:
        return None
    g = _most_per_group(c, options, demand)
    if g >= cap:
        return None
    return math.ceil((most_spot - g) / (cap - g) * (1 + 1e-9))


def _most_per_group(c: Candidate, options: Options, demand: Demand) -> float:
    """G: the most traffic (units/s) one group of c can carry: its effective utilisation spent on the
    buckets it serves fastest, each up to the bucket's own rate."""
    budget = effective_utilisation(c, options)
    traffic = 0.0
    for capacity, rate in sorted(zip(c.capacity, demand.rates, strict=True), reverse=True):
        if budget <= 0 or capacity <= 0:
            break
        take = min(rate, budget * capacity)
        traffic += take
        budget -= take / capacity
    return traffic


def _zones_across_domains(candidates: list[Candidate], options: Options) -> set[str]:
    """Workloads with a spot zone that lies in two failure domains (the proof needs each in one)."""
    seen: dict[tuple[str, str], str] = {}
    out: set[str] = set()
    for c in candidates:
        if c.spot and seen.setdefault((c.workload, c.zone), c.domain(options.domain)) != c.domain(options.domain):
            out.add(c.workload)
    return out
