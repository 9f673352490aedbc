"""The fleet-planning MILP: candidates (an offer in one configuration) serve slices of request buckets.

Generalises Mélange (Griggs et al. 2024) from GPU types to offers. Variables: an integer number of groups
y_c per candidate (a group is the instances that hold one copy of the model), and the share x_{s,c} of slice
s routed to candidate c (continuous by default, 0/1 with `whole`); hosted token-priced APIs take shares at a
price per request. Pure: numbers in, numbers out; HiGHS (through scipy.optimize.milp) solves it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp
from scipy.sparse import coo_array

from flopex.plan._model import (
    Candidate,
    Demand,
    Hosted,
    Options,
    Solution,
    default_time_limit,
    effective_utilisation,
    hosted_usable,
    usable,
)
from flopex.plan._prune import prune

__all__ = ["solve"]


def _coupled(candidates: list[Candidate], demands: list[Demand], options: Options) -> bool:
    """Whether the workloads share a constraint (offer capacity, a site's power, the carbon cap)."""
    if len(demands) < 2:
        return True
    if options.carbon_cap_g_per_hour is not None and "carbon" not in options.disabled:
        return True
    if options.power_budget_kw and "power" not in options.disabled:
        return True
    if "capacity" not in options.disabled:
        users: dict[str, set[str]] = defaultdict(set)
        for c in candidates:
            if c.offer in options.offer_capacity:
                users[c.offer].add(c.workload)
        if any(len(ws) > 1 for ws in users.values()):
            return True
    return False


def _merge(parts: list[Solution], seconds: float, options: Options) -> Solution:
    """Independent workloads solved apart: the union of their plans. Objectives and HiGHS's bounds add up, so
    the gap of the whole is (sum of objectives - sum of bounds) / sum of objectives; unknown if any part's is."""
    bad = next((p for p in parts if not p.feasible), None)
    if bad is not None:
        return replace(bad, seconds=seconds)
    objective = sum(p.objective for p in parts)
    bounds = [p.bound for p in parts]
    bound = None if any(b is None for b in bounds) else sum(b for b in bounds if b is not None)
    return Solution(
        status="optimal" if all(p.status == "optimal" for p in parts) else "time_limit",
        message="; ".join(dict.fromkeys(p.message for p in parts)),
        usd_per_hour=sum(p.usd_per_hour for p in parts),
        objective=objective,
        gap=None if bound is None else _relative_gap(objective, bound),
        seconds=seconds,
        groups={k: v for p in parts for k, v in p.groups.items()},
        routing={k: v for p in parts for k, v in p.routing.items()},
        load={k: v for p in parts for k, v in p.load.items()},
        hosted_usd_per_hour=sum(p.hosted_usd_per_hour for p in parts),
        energy_kwh_per_hour=sum(p.energy_kwh_per_hour for p in parts),
        carbon_g_per_hour=sum(p.carbon_g_per_hour for p in parts),
        size=(sum(p.size[0] for p in parts), sum(p.size[1] for p in parts), sum(p.size[2] for p in parts)),
        bound=bound,
        time_limit_s=options.time_limit_s if options.time_limit_s is not None else sum(p.time_limit_s for p in parts),
        energy_unknown={k: v for p in parts for k, v in p.energy_unknown.items()},
        carbon_unknown={k: v for p in parts for k, v in p.carbon_unknown.items()},
    )


def _relative_gap(objective: float, bound: float) -> float | None:
    """HiGHS's definition: (objective - bound) / |objective|. Where the objective is 0 (all of it sunk cost)
    the gap is 0 if the bound is not below it, else unknown (HiGHS says infinite)."""
    if objective == 0:
        return 0.0 if bound >= 0 else None
    return max(0.0, (objective - bound) / abs(objective))


def solve(
    candidates: list[Candidate], demands: list[Demand], options: Options, hosted: list[Hosted] | None = None
) -> Solution:
    """Minimise $/h (+ carbon price x expected tCO2e/h) subject to the constraints in `options`.

    Workloads that share no constraint are independent problems; they are solved one by one, which is exact
    and much faster than one large model. Each gets the default time limit of its own size, or, where the
    options set a limit, its share of that limit."""
    if not _coupled(candidates, demands, options):
        start = time.perf_counter()
        parts = []
        for index, d in enumerate(demands):  # time a workload leaves unused passes to the next ones
            share = options
            if options.time_limit_s is not None:
                left = options.time_limit_s - (time.perf_counter() - start)
                share = replace(options, time_limit_s=max(left / (len(demands) - index), 0.1))
            own = [c for c in candidates if c.workload == d.workload]
            parts.append(_solve(own, [d], share, [h for h in hosted or [] if h.workload == d.workload]))
        return _merge(parts, time.perf_counter() - start, options)
    return _solve(candidates, demands, options, hosted)


@dataclass
class _Model:
    """The MILP as it is built: columns (y per candidate first, then x per slice and target, then one binary
    per failure domain), their costs and integrality, and sparse rows with bounds."""

    cands: list[Candidate]
    hosted: list[Hosted]
    slices: list[tuple[str, int, float]]  # (workload, bucket, rate)
    cost: list[float] = field(default_factory=list)
    integrality: list[int] = field(default_factory=list)
    x_cols: list[tuple[int, int, int]] = field(default_factory=list)  # (slice, candidate or -1-hosted, column)
    slice_cols: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    load_terms: dict[int, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    carbon_terms: list[tuple[int, float]] = field(default_factory=list)
    domain_cols: dict[tuple[str, str], int] = field(default_factory=dict)
    y_ub: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)

    def column(self, cost: float, integer: bool) -> int:
        self.cost.append(cost)
        self.integrality.append(1 if integer else 0)
        return len(self.cost) - 1

    def add(self, terms: list[tuple[int, float]], lb: float, ub: float) -> None:
        r = len(self.lb)
        for col, val in terms:
            self.rows.append(r)
            self.cols.append(col)
            self.vals.append(val)
        self.lb.append(lb)
        self.ub.append(ub)

    @property
    def size(self) -> tuple[int, int, int]:
        ints = sum(self.integrality)
        return ints, len(self.cost) - ints, len(self.lb)


def _slices(demands: list[Demand], options: Options) -> list[tuple[str, int, float]]:
    out: list[tuple[str, int, float]] = []
    for d in demands:
        for b, rate in enumerate(d.rates):
            if rate > 0:
                out += [(d.workload, b, rate / options.slice_factor)] * options.slice_factor
    return out


def _columns(m: _Model, by_workload: Mapping[str, Demand], options: Options) -> None:
    """y per candidate (idle carbon priced), x per (slice, candidate) with the carbon of the load it adds, x
    per (slice, hosted API) at its price (and the carbon of its requests, where the plan gives a factor), and
    a binary per (workload, domain) where a minimum is asked."""
    price = options.carbon_price_usd_per_t / 1e6  # $ per g
    for c in m.cands:
        m.column(c.usd_per_hour + price * c.idle_kw * c.grid_g_per_kwh, integer=True)
    for s, (w, b, rate) in enumerate(m.slices):
        for i, c in enumerate(m.cands):
            if c.workload != w or c.capacity[b] <= 0:
                continue
            share = rate / c.capacity[b]  # groups at full load if all of the slice goes here
            extra_g = (c.busy_kw - c.idle_kw) * c.grid_g_per_kwh * share
            col = m.column(price * extra_g, integer=options.whole)
            m.x_cols.append((s, i, col))
            m.slice_cols[s].append((col, i))
            m.load_terms[i].append((col, share))
            m.carbon_terms.append((col, extra_g))
        for h, api in enumerate(m.hosted):
            if api.workload == w and api.serves_bucket(b):
                carbon_g = 0.0 if api.gco2e_per_request is None else api.gco2e_per_request[b] * rate * 3600
                col = m.column(api.usd_per_request[b] * rate * 3600 + price * carbon_g, integer=options.whole)
                m.x_cols.append((s, -1 - h, col))
                m.slice_cols[s].append((col, -1 - h))
                if api.gco2e_per_request is not None:
                    m.carbon_terms.append((col, carbon_g))
    m.carbon_terms += [(i, c.idle_kw * c.grid_g_per_kwh) for i, c in enumerate(m.cands)]
    if "domains" in options.disabled:
        return
    for w, k in options.min_domains.items():
        if k > 1 and w in by_workload:
            for c in m.cands:
                if c.workload == w and (w, c.domain(options.domain)) not in m.domain_cols:
                    m.domain_cols[(w, c.domain(options.domain))] = m.column(0.0, integer=True)


def _capacity_rows(m: _Model, options: Options) -> None:
    """Every slice served; the load on a candidate within its groups x effective utilisation (which also
    bounds its groups: never more than all the load it could take needs)."""
    for s in range(len(m.slices)):
        m.add([(col, 1.0) for col, _ in m.slice_cols[s]], 1.0, 1.0)
    for i, c in enumerate(m.cands):
        eff = effective_utilisation(c, options)
        terms = m.load_terms.get(i, [])
        m.add([*terms, (i, -eff)], -np.inf, 0.0)
        m.y_ub.append(math.ceil(sum(v for _, v in terms) / eff + 1e-9) if terms else 0)


def _limit_rows(m: _Model, options: Options) -> None:
    """Instances per offer, power per site, and the carbon cap."""
    if "capacity" not in options.disabled:
        per_offer: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(m.cands):
            if c.offer in options.offer_capacity:
                per_offer[c.offer].append(i)
        for offer, idx in per_offer.items():
            m.add([(i, float(m.cands[i].instances)) for i in idx], 0.0, float(options.offer_capacity[offer]))
    if "power" not in options.disabled:
        per_site: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(m.cands):
            if c.site in options.power_budget_kw:
                per_site[c.site].append(i)
        for site, idx in per_site.items():
            m.add([(i, m.cands[i].busy_kw) for i in idx], 0.0, options.power_budget_kw[site])
    if "carbon" not in options.disabled and options.carbon_cap_g_per_hour is not None:
        m.add(m.carbon_terms, 0.0, options.carbon_cap_g_per_hour)


def _spot_rows(m: _Model, demands: list[Demand], options: Options) -> None:
    """The on-demand floor of every slice, and the cap on a workload's spot traffic per zone."""
    if "on_demand_floor" not in options.disabled and options.on_demand_floor > 0:
        for s in range(len(m.slices)):
            firm = [(col, 1.0) for col, i in m.slice_cols[s] if i < 0 or not m.cands[i].spot]
            m.add(firm, options.on_demand_floor, np.inf)
    if "zone_share" in options.disabled or options.max_zone_share >= 1:
        return
    for d in demands:
        zones: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for s, i, col in m.x_cols:
            w, _, rate = m.slices[s]
            if w == d.workload and i >= 0 and m.cands[i].spot:
                zones[m.cands[i].zone].append((col, rate))
        for terms in zones.values():
            m.add(terms, -np.inf, options.max_zone_share * sum(d.rates))


def _domain_rows(m: _Model, options: Options) -> None:
    """A domain counts (its binary is 1) only where it hosts a group; each workload counts enough domains."""
    members: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for i, c in enumerate(m.cands):
        if (c.workload, c.domain(options.domain)) in m.domain_cols:
            members[(c.workload, c.domain(options.domain))].append((i, -1.0))
    for key, z in m.domain_cols.items():
        m.add([(z, 1.0), *members[key]], -np.inf, 0.0)
    for w, k in options.min_domains.items():
        zs = [(z, 1.0) for (ww, _), z in m.domain_cols.items() if ww == w]
        if zs:
            m.add(zs, float(k), np.inf)


def _run(m: _Model, options: Options, time_limit_s: float) -> OptimizeResult:
    n = len(m.cost)
    ub = np.full(n, 1.0)
    ub[: len(m.cands)] = m.y_ub
    constraints = []
    if m.lb:
        matrix = coo_array((m.vals, (m.rows, m.cols)), shape=(len(m.lb), n)).tocsr()
        constraints.append(LinearConstraint(matrix, np.array(m.lb), np.array(m.ub)))
    return milp(
        c=np.array(m.cost),
        integrality=np.array(m.integrality),
        bounds=Bounds(np.zeros(n), ub),
        constraints=constraints,
        options={"time_limit": time_limit_s, "mip_rel_gap": options.mip_gap, "presolve": True, "disp": False},
    )


def _solve(
    candidates: list[Candidate], demands: list[Demand], options: Options, hosted: list[Hosted] | None = None
) -> Solution:
    start = time.perf_counter()
    by_workload = {d.workload: d for d in demands}
    served = [c for c in candidates if c.workload in by_workload and any(t > 0 for t in c.capacity)]
    cands = prune([c for c in served if usable(c, options) and effective_utilisation(c, options) > 0], options, demands)
    # a hosted API publishes no energy: it meets a carbon price or cap only with a carbon factor from the plan
    m = _Model(cands, [h for h in hosted or [] if hosted_usable(h, options)], _slices(demands, options))
    _columns(m, by_workload, options)
    _capacity_rows(m, options)
    _limit_rows(m, options)
    _spot_rows(m, demands, options)
    _domain_rows(m, options)
    limit = options.time_limit_s if options.time_limit_s is not None else default_time_limit(m.size)
    empty = Solution("infeasible", "", 0.0, 0.0, None, 0.0, {}, {}, {}, 0.0, 0.0, 0.0, m.size, time_limit_s=limit)
    unserved = next((s for s in range(len(m.slices)) if not m.slice_cols[s]), None)
    if unserved is not None:
        w, b, _ = m.slices[unserved]
        message = f"no candidate can serve {w} bucket {by_workload[w].labels[b]} within its SLO"
        return replace(empty, message=message, seconds=time.perf_counter() - start)
    result = _run(m, options, limit)
    seconds = time.perf_counter() - start
    if result.x is None:
        status: Literal["infeasible", "error"] = "infeasible" if result.status == 2 else "error"
        message = str(result.message)
        if result.status == 1:
            message = (f"HiGHS found no plan within its {limit:.0f} s time limit. To fix: raise the limit "
                       "(--time-limit SECONDS, or time_limit_s in the plan file).")  # fmt: skip
        return replace(empty, status=status, message=message, seconds=seconds)
    return _decode(m, result, by_workload, seconds, limit)


def _bound_and_gap(result: OptimizeResult, objective: float) -> tuple[float | None, float | None]:
    """HiGHS's dual bound and relative gap, as scipy passes them on (`mip_dual_bound`, `mip_gap`), each
    completed from the other where one is missing; (None, None) where neither is known, never a gap of 0."""
    bound, gap = result.get("mip_dual_bound"), result.get("mip_gap")
    bound = float(bound) if bound is not None and math.isfinite(bound) else None
    gap = float(gap) if gap is not None and math.isfinite(gap) else None
    if bound is None and gap is not None:
        bound = objective - gap * abs(objective)
    if gap is None and bound is not None:
        gap = _relative_gap(objective, bound)
    return bound, gap


def _decode(
    m: _Model, result: OptimizeResult, by_workload: Mapping[str, Demand], seconds: float, limit: float
) -> Solution:
    """Groups, routing shares, load, money, energy and carbon of a solved model."""
    x = result.x
    groups = {c.id: round(float(x[i])) for i, c in enumerate(m.cands) if round(float(x[i])) > 0}
    routing: dict[tuple[str, int], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    load: dict[str, float] = defaultdict(float)
    hosted_usd = hosted_g = 0.0
    for s, i, col in m.x_cols:
        share = float(x[col])
        if share <= 1e-9:
            continue
        w, b, rate = m.slices[s]
        total = by_workload[w].rates[b]
        if i >= 0:
            routing[(w, b)][m.cands[i].id] += share * rate / total
            load[m.cands[i].id] += share * rate / m.cands[i].capacity[b]
        else:
            api = m.hosted[-1 - i]
            routing[(w, b)][api.id] += share * rate / total
            hosted_usd += share * rate * 3600 * api.usd_per_request[b]
            hosted_g += 0.0 if api.gco2e_per_request is None else share * rate * 3600 * api.gco2e_per_request[b]
    kw = {c.id: c.facility_kw(groups.get(c.id, 0), load.get(c.id, 0.0)) for c in m.cands}
    energy_unknown, carbon_unknown = _unknown_shares(m, x)
    bound, gap = _bound_and_gap(result, float(result.fun))
    return Solution(
        status="optimal" if result.status == 0 else "time_limit",  # stopped with a plan, before proving it
        message=str(result.message),
        usd_per_hour=sum(groups.get(c.id, 0) * c.usd_per_hour for c in m.cands) + hosted_usd,
        objective=float(result.fun),
        gap=gap,
        seconds=seconds,
        groups=groups,
        routing={k: dict(v) for k, v in routing.items()},
        load=dict(load),
        hosted_usd_per_hour=hosted_usd,
        energy_kwh_per_hour=sum(kw.values()),
        carbon_g_per_hour=sum(kw[c.id] * c.grid_g_per_kwh for c in m.cands) + hosted_g,
        size=m.size,
        bound=bound,
        time_limit_s=limit,
        energy_unknown=energy_unknown,
        carbon_unknown=carbon_unknown,
    )


def _unknown_shares(m: _Model, x: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """Per workload, the share of its served traffic routed where the energy is unknown (offers without
    published power, hosted APIs) and where the carbon is (the same, less hosted APIs with a carbon factor)."""
    served: dict[str, float] = defaultdict(float)
    no_energy: dict[str, float] = defaultdict(float)
    no_carbon: dict[str, float] = defaultdict(float)
    for s, i, col in m.x_cols:
        w, _, rate = m.slices[s]
        amount = max(float(x[col]), 0.0) * rate
        served[w] += amount
        if i >= 0:
            known_energy = known_carbon = m.cands[i].power_known
        else:
            known_energy, known_carbon = False, m.hosted[-1 - i].gco2e_per_request is not None
        no_energy[w] += 0.0 if known_energy else amount
        no_carbon[w] += 0.0 if known_carbon else amount
    return (
        {w: min(1.0, no_energy[w] / t) for w, t in served.items() if t > 0},
        {w: min(1.0, no_carbon[w] / t) for w, t in served.items() if t > 0},
    )
