"""The cheapest single-offer fleet under a plan's own rules: it keeps every rule the plan keeps, says why no
single offer can where none can, and compares like with like without the failure-domain rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.perf import load_efficiency
from flopex.plan import Candidate, Demand, Hosted, Inputs, Plan, PlanSpec, SpotPolicy, load_plan, make_plan
from flopex.workloads import Workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _workloads(*names: str) -> list[Workload]:
    _, (w,) = load_plan(EXAMPLES / "code-assistant.yaml")
    return [w.model_copy(update={"name": n}) for n in names]


def _gpu(workload: str, offer: str, usd: float, req_s: float, *, region: str = "r1", spot: bool = False) -> Candidate:
    return Candidate(
        f"{workload}|{offer}|fp8|x1", workload, offer, offer, usd, (req_s,), spot=spot, region=region,
        provider="p", zone=f"p/{region}/{offer}", site=f"p/{region}",
    )  # fmt: skip


def _inputs(candidates: list[Candidate], rates: dict[str, float], **kw: Any) -> Inputs:
    return Inputs(
        candidates=candidates,
        demands=[Demand(w, (r,), ("all",)) for w, r in rates.items()],
        hosted=kw.get("hosted", []),
        offer_capacity=kw.get("capacity", {}),
        units={w: "requests/s" for w in rates},
        output_tokens={w: (30.0,) for w in rates},
        skipped=[],
    )


def _plan(inputs: Inputs, **spec: Any) -> Plan:
    names = [d.workload for d in inputs.demands]
    full = PlanSpec(name="t", workloads=names, utilisation=1.0, mip_gap=0.0, **spec)
    return make_plan(full, _workloads(*names), CATALOG, EFF, ENERGY, inputs=inputs)


def _baselines(plan: Plan) -> tuple[dict[str, Any], dict[str, Any] | None]:
    e = plan._explanation_json()
    same = e["single_offer_same_rules"]
    assert same is not None
    return same, e["single_offer_without_domains"]


def test_the_baseline_keeps_the_failure_domain_rule_a_cheaper_single_offer_breaks() -> None:
    # one cheap offer in r1 serves all 10 req/s for $1/h; two regions cost $1 + $2 at least
    inputs = _inputs([_gpu("a", "cheap", 1.0, 10.0), _gpu("a", "west", 2.0, 10.0, region="r2")], {"a": 10.0})
    plan = _plan(inputs, min_failure_domains=2)
    assert plan.solution.usd_per_hour == pytest.approx(3.0)
    same, relaxed = _baselines(plan)
    assert same["usd_per_hour"] is None and same["saving"] is None  # never the $1/h offer that breaks the rule
    assert same["reason"] == "a needs 2 failure domains (regions), and one offer lies in one region"
    assert same["workloads"] == [{"workload": "a", "offer": None, "usd_per_hour": None, "reason": same["reason"][2:]}]
    # like with like: without the rule, the plan is the cheap offer alone, as is the cheapest single offer
    assert relaxed is not None and relaxed["rules_left_out"] == ["domains"]
    assert relaxed["usd_per_hour"] == pytest.approx(1.0) and relaxed["plan_usd_per_hour"] == pytest.approx(1.0)
    assert relaxed["workloads"][0]["offer"] == "cheap"


def test_the_baseline_keeps_the_on_demand_floor_a_cheaper_spot_offer_breaks() -> None:
    # 15 req/s: the spot offer alone ($0.50 a group) is cheapest but all spot; half must run on demand ($2)
    spot, firm = _gpu("a", "spot", 0.5, 10.0, spot=True), _gpu("a", "firm", 2.0, 10.0)
    plan = _plan(_inputs([spot, firm], {"a": 15.0}), spot=SpotPolicy(on_demand_floor=0.5, interruption_rate=0.0))
    assert plan.solution.usd_per_hour == pytest.approx(2.5)  # one on-demand group and one spot
    same, relaxed = _baselines(plan)
    assert relaxed is None  # one offer can meet every rule here
    assert same["workloads"][0]["offer"] == "firm" and same["usd_per_hour"] == pytest.approx(4.0)
    assert same["saving"] == pytest.approx(1 - 2.5 / 4.0)


def test_where_no_single_offer_meets_the_rules_the_reason_counts_what_each_breaks() -> None:
    # 15 req/s, 30% of it on demand: the one on-demand instance takes that, spot the rest; no offer does it alone
    spots = [_gpu("a", f"spot{k}", 0.5, 10.0, spot=True) for k in range(2)]
    cands = [*spots, _gpu("a", "firm", 2.0, 10.0), _gpu("a", "slow", 1.0, 0.0)]
    plan = _plan(_inputs(cands, {"a": 15.0}, capacity={"firm": 1}), spot=SpotPolicy(on_demand_floor=0.3))
    assert plan.solution.usd_per_hour == pytest.approx(2.5)
    same, _ = _baselines(plan)
    assert same["usd_per_hour"] is None
    assert same["reason"] == (
        "a has none that meets them: of its 4 offers, 2 spot under the 30% on-demand floor, "
        "1 not shown to meet the SLO on every bucket, 1 with too few instances (offer capacity)"
    )


def test_a_capacity_the_workloads_share_is_shared_by_their_single_offers_too() -> None:
    # each workload alone would take the one instance of x; together, one of them must buy y
    cands = [_gpu(w, o, usd, 10.0) for w in "ab" for o, usd in (("x", 1.0), ("y", 3.0))]
    plan = _plan(_inputs(cands, {"a": 5.0, "b": 5.0}, capacity={"x": 1}))
    assert plan.solution.usd_per_hour == pytest.approx(4.0)
    same, _ = _baselines(plan)
    assert same["picked_one_workload_at_a_time"]
    assert {w["workload"]: w["offer"] for w in same["workloads"]} == {"a": "x", "b": "y"}
    assert same["usd_per_hour"] == pytest.approx(4.0)


def test_a_hosted_api_is_one_offer() -> None:
    # 1 req/s at $0.0001 a request is $0.36/h, cheaper than a $1/h group
    api = Hosted("api", "a", (0.0001,))
    plan = _plan(_inputs([_gpu("a", "gpu", 1.0, 10.0)], {"a": 1.0}, hosted=[api]))
    same, _ = _baselines(plan)
    assert same["workloads"][0]["offer"] == "api" and same["usd_per_hour"] == pytest.approx(0.36)


def test_the_fleet_example_compares_like_with_like() -> None:
    spec, workloads = load_plan(EXAMPLES / "fleet-plan.yaml")
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY)
    same, relaxed = _baselines(plan)
    assert same["usd_per_hour"] is None and "needs 2 failure domains" in same["reason"]
    assert relaxed is not None and relaxed["usd_per_hour"] is not None
    domains = next((b for b in plan.binding if b.group == "domains"), None)
    without = plan.solution.usd_per_hour if domains is None else domains.usd_per_hour_without
    assert relaxed["plan_usd_per_hour"] == pytest.approx(without)  # the same re-solve as the binding line
    assert relaxed["plan_usd_per_hour"] <= relaxed["usd_per_hour"] * (1 + spec.mip_gap)
    cands = {c.offer: c for c in plan.inputs.candidates}
    for w in relaxed["workloads"]:  # the spot floor still holds: no spot offer alone
        assert not cands[w["offer"]].spot
