"""The planning MILP on small problems whose answers can be worked out by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import OptimizeResult, milp

import flopex.plan._milp as milp_module
from flopex.plan import Candidate, Demand, Hosted, Options, default_time_limit, read_melange, solve, solve_melange

MELANGE = Path(__file__).resolve().parents[3] / "shared" / "data" / "melange" / "example.json"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "melange-example.json"


def test_the_melange_toy_gives_its_published_optimum() -> None:
    # Mélange README: {"A10G": 3, "A100-80GB": 1, "cost": 6.7} (a copy of ../shared/data/melange/example.json)
    spec = read_melange(MELANGE if MELANGE.exists() else FIXTURE)
    s = solve_melange(spec)
    assert s.status == "optimal"
    assert s.groups == {"A10G": 3, "A100-80GB": 1}
    assert s.usd_per_hour == pytest.approx(6.70)


def test_fractional_routing_is_never_dearer_than_whole_slices() -> None:
    spec = read_melange(FIXTURE)
    whole = solve_melange(spec)
    cands = [
        Candidate(g, "w", g, g, i.cost, tuple(t for row in i.tputs for t in row)) for g, i in spec.gpu_info.items()
    ]
    rates = tuple(p * spec.total_request_rate for row in spec.workload_distribution for p in row)
    frac = solve(cands, [Demand("w", rates, ("a", "b", "c", "d"))], Options(utilisation=1.0, mip_gap=0))
    # by hand: 1 x A100 takes 1.0 of its 1.125 load units; the rest of bucket (in1,out0) needs 1 x A10G
    assert frac.usd_per_hour == pytest.approx(1.01 + 3.67)
    assert frac.usd_per_hour <= whole.usd_per_hour


def _c(cid: str, usd: float, cap: float, **kw: object) -> Candidate:
    fields: dict[str, object] = {"workload": "w", "offer": cid, "label": cid, "usd_per_hour": usd, "capacity": (cap,)}
    fields.update(kw)
    return Candidate(id=cid, **fields)  # type: ignore[arg-type]


DEMAND = [Demand("w", (10.0,), ("all",))]


def test_utilisation_sizes_the_groups() -> None:
    s = solve([_c("a", 1.0, 4.0)], DEMAND, Options(utilisation=0.8, mip_gap=0))
    assert s.groups == {"a": 4}  # 10 / (4 x 0.8) = 3.1 -> 4
    assert s.load["a"] == pytest.approx(2.5)


def test_offer_capacity_spills_to_the_next_cheapest() -> None:
    s = solve(
        [_c("a", 1.0, 4.0), _c("b", 2.0, 4.0)], DEMAND, Options(utilisation=1.0, offer_capacity={"a": 2}, mip_gap=0)
    )
    assert s.groups == {"a": 2, "b": 1}


def test_a_power_budget_and_a_carbon_cap_bind() -> None:
    cheap_dirty = _c("a", 1.0, 10.0, site="s1", busy_kw=10.0, idle_kw=10.0, grid_g_per_kwh=800.0)
    dear_clean = _c("b", 3.0, 10.0, site="s2", busy_kw=10.0, idle_kw=10.0, grid_g_per_kwh=50.0)
    free = solve([cheap_dirty, dear_clean], DEMAND, Options(utilisation=1.0, mip_gap=0))
    assert free.groups == {"a": 1}
    assert free.carbon_g_per_hour == pytest.approx(8000)
    powered = solve([cheap_dirty, dear_clean], DEMAND, Options(utilisation=1.0, power_budget_kw={"s1": 5.0}, mip_gap=0))
    assert powered.groups == {"b": 1}
    capped = solve([cheap_dirty, dear_clean], DEMAND, Options(utilisation=1.0, carbon_cap_g_per_hour=1000, mip_gap=0))
    assert capped.groups == {"b": 1}
    priced = solve([cheap_dirty, dear_clean], DEMAND, Options(utilisation=1.0, carbon_price_usd_per_t=300, mip_gap=0))
    assert priced.groups == {"b": 1}  # 7.5 kg/h x $300/t = $2.25/h > the $2/h price gap


def test_failure_domains_spot_floor_and_zone_share() -> None:
    a = _c("a", 1.0, 10.0, provider="p", region="r1", zone="z1", spot=True)
    b = _c("b", 1.5, 10.0, provider="p", region="r2", zone="z2", spot=True)
    c = _c("c", 4.0, 10.0, provider="p", region="r3", zone="z3")
    base = Options(utilisation=1.0, mip_gap=0)
    assert solve([a, b, c], DEMAND, base).groups == {"a": 1}
    two = solve([a, b, c], DEMAND, Options(utilisation=1.0, mip_gap=0, min_domains={"w": 2}))
    assert two.groups == {"a": 1, "b": 1}
    floor = solve([a, b, c], DEMAND, Options(utilisation=1.0, mip_gap=0, on_demand_floor=0.3))
    assert floor.groups.get("c") == 1 and floor.routing[("w", 0)]["c"] >= 0.3 - 1e-9
    spread = solve([a, b, c], DEMAND, Options(utilisation=1.0, mip_gap=0, max_zone_share=0.6))
    assert spread.routing[("w", 0)]["a"] <= 0.6 + 1e-9 and spread.groups.get("b") == 1


@pytest.mark.parametrize(
    ("rate_per_hour", "recovery_s", "spot", "groups"),
    [
        (0.5, 120.0, True, 1),  # 0.5/h x 2 min: 1.7% of capacity lost; 10 / (12 x 0.983) < 1
        (0.5, 1800.0, True, 2),  # 0.5/h x 30 min: 25% lost; 10 / (12 x 0.75) > 1
        (1.0, 720.0, True, 2),  # 1/h x 12 min: 20% lost; 12 x 0.8 = 9.6 < 10
        (0.5, 1800.0, False, 1),  # on demand is never discounted
    ],
)
def test_spot_capacity_loses_the_hours_spent_recovering_from_interruptions(
    rate_per_hour: float, recovery_s: float, spot: bool, groups: int
) -> None:
    a = _c("a", 1.0, 12.0, spot=spot, interruption_rate=rate_per_hour)
    s = solve([a], DEMAND, Options(utilisation=1.0, recovery_s=recovery_s, mip_gap=0))
    assert s.groups == {"a": groups}


def test_a_spot_offer_that_is_always_recovering_serves_nothing() -> None:
    a = _c("a", 1.0, 12.0, spot=True, interruption_rate=1.0)
    s = solve([a, _c("b", 3.0, 12.0)], DEMAND, Options(utilisation=1.0, recovery_s=3600, mip_gap=0))
    assert s.groups == {"b": 1}


def test_a_hosted_api_takes_what_is_cheaper_per_request() -> None:
    api = Hosted("api", "w", (0.0001,))  # $3.60/h for all 10 req/s
    s = solve([_c("a", 5.0, 10.0)], DEMAND, Options(utilisation=1.0, mip_gap=0), [api])
    assert s.groups == {} and s.hosted_usd_per_hour == pytest.approx(3.6)
    s = solve([_c("a", 2.0, 10.0)], DEMAND, Options(utilisation=1.0, mip_gap=0), [api])
    assert s.groups == {"a": 1}


def test_infeasible_and_unservable_are_reported() -> None:
    s = solve([_c("a", 1.0, 0.0)], DEMAND, Options())
    assert s.status == "infeasible" and "no candidate can serve" in s.message
    s = solve([_c("a", 1.0, 10.0)], DEMAND, Options(offer_capacity={"a": 0}))
    assert s.status == "infeasible"


@settings(max_examples=30, deadline=None)
@given(
    prices=st.lists(st.floats(0.5, 20), min_size=2, max_size=5),
    caps=st.lists(st.floats(0.5, 30), min_size=2, max_size=5),
    rates=st.lists(st.floats(0.1, 40), min_size=1, max_size=3),
    extra=st.tuples(st.floats(0.5, 20), st.floats(0.5, 30)),
)
def test_more_hardware_never_makes_a_plan_costlier(
    prices: list[float], caps: list[float], rates: list[float], extra: tuple[float, float]
) -> None:
    n = min(len(prices), len(caps))
    demand = [Demand("w", tuple(rates), tuple(str(i) for i in range(len(rates))))]

    def cand(i: int, usd: float, cap: float) -> Candidate:
        return Candidate(f"c{i}", "w", f"o{i}", "", usd, tuple(cap * (1 + j) for j in range(len(rates))))

    base = [cand(i, prices[i], caps[i]) for i in range(n)]
    options = Options(utilisation=0.9, mip_gap=0)
    before = solve(base, demand, options)
    after = solve([*base, cand(n, *extra)], demand, options)
    assert before.feasible and after.feasible
    assert after.usd_per_hour <= before.usd_per_hour + 1e-6
    # and a costlier copy of an existing candidate changes nothing (it is pruned or never chosen)
    copy = Candidate("copy", "w", "o0", "", prices[0] + 1, base[0].capacity)
    assert solve([*base, copy], demand, options).usd_per_hour == pytest.approx(before.usd_per_hour)


def _stopping_at_the_limit(
    monkeypatch: pytest.MonkeyPatch, *stops: tuple[float | None, float | None]
) -> list[OptimizeResult]:
    """Make HiGHS report each solve (in turn) as stopped at its time limit with the given (gap, bound as a
    share of the objective); a stop of (None, None) has neither, as when no bound was found."""
    seen: list[OptimizeResult] = []

    def stopped(*args: Any, **kwargs: Any) -> OptimizeResult:
        result = milp(*args, **kwargs)
        gap, bound = stops[len(seen) % len(stops)]
        result.status, result.message = 1, "Time limit reached."
        result.mip_gap = gap
        result.mip_dual_bound = None if bound is None else bound * result["fun"]
        seen.append(result)
        return result

    monkeypatch.setattr(milp_module, "milp", stopped)
    return seen


def test_a_solve_stopped_at_its_time_limit_reports_the_gap_highs_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    _stopping_at_the_limit(monkeypatch, (0.2, 0.8))
    s = solve([_c("a", 1.0, 10.0)], DEMAND, Options(utilisation=1.0))
    assert s.status == "time_limit" and s.feasible
    assert s.gap == pytest.approx(0.2) and s.bound == pytest.approx(0.8)


@pytest.mark.parametrize(("stop", "gap"), [((None, 0.75), 0.25), ((0.1, None), 0.1), ((None, None), None)])
def test_a_missing_gap_follows_from_the_bound_and_is_never_taken_for_zero(
    monkeypatch: pytest.MonkeyPatch, stop: tuple[float | None, float | None], gap: float | None
) -> None:
    _stopping_at_the_limit(monkeypatch, stop)
    s = solve([_c("a", 2.0, 10.0)], DEMAND, Options(utilisation=1.0))
    assert s.status == "time_limit"
    assert s.gap == (None if gap is None else pytest.approx(gap))


def test_independent_workloads_merge_their_objectives_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    # w1: one $1 group, stopped at 50% gap (bound $0.50); w2: one $3 group, proved optimal (bound $3)
    _stopping_at_the_limit(monkeypatch, (0.5, 0.5), (0.0, 1.0))
    cands = [_c("a", 1.0, 10.0, workload="w1"), _c("b", 3.0, 10.0, workload="w2")]
    demands = [Demand("w1", (10.0,), ("all",)), Demand("w2", (10.0,), ("all",))]
    s = solve(cands, demands, Options(utilisation=1.0, time_limit_s=4.0))
    assert s.usd_per_hour == pytest.approx(4.0) and s.status == "time_limit"
    assert s.bound == pytest.approx(3.5)
    assert s.gap == pytest.approx(0.125)  # ($4 - $3.50) / $4, not the mean of 50% and 0%
    assert s.time_limit_s == 4.0  # an explicit limit, shared by the parts


def test_the_default_time_limit_grows_with_the_model_and_an_explicit_one_wins() -> None:
    assert default_time_limit((0, 0, 0)) == 10.0
    assert default_time_limit((1000, 50_000, 0)) == pytest.approx(40.0)  # 10 s + 20 s + 10 s
    assert default_time_limit((10**6, 10**7, 0)) == 600.0
    s = solve([_c("a", 1.0, 10.0), _c("b", 2.0, 5.0)], DEMAND, Options())
    assert s.time_limit_s == pytest.approx(default_time_limit(s.size)) and s.time_limit_s >= 10.0
    assert solve([_c("a", 1.0, 10.0)], DEMAND, Options(time_limit_s=3.0)).time_limit_s == 3.0
