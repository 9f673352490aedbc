"""Cost against carbon: the frontier holds the plan itself, marked; where the plan is not on it, a note says why;
the SVG has ticked axes, labelled points and the plan ringed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.perf import load_efficiency
from flopex.plan import Candidate, Demand, Inputs, ParetoPoint, Plan, PlanSpec, load_plan, make_plan, pareto, pareto_svg

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()
SVG = "{http://www.w3.org/2000/svg}"


def _plan(dark: bool = False, price: float = 0.0) -> Plan:
    """10 req/s: a dirty GPU ($1/h, 8 kg/h), a clean one ($3/h, 0.5 kg/h, 6 req/s, one instance) and, if asked,
    a cheaper accelerator that publishes no power ($0.50/h)."""
    dirty = Candidate("a|dirty|fp8|x1", "a", "dirty", "dirty", 1.0, (10.0,), busy_kw=10.0, grid_g_per_kwh=800.0)
    clean = Candidate("a|clean|fp8|x1", "a", "clean", "clean", 3.0, (6.0,), busy_kw=10.0, grid_g_per_kwh=50.0)
    unknown = Candidate("a|dark|fp8|x1", "a", "dark", "dark", 0.5, (10.0,), power_known=False)
    inputs = Inputs(
        [dirty, clean, *([unknown] if dark else [])], [Demand("a", (10.0,), ("all",))], [], {"clean": 1},
        {"a": "requests/s"}, {"a": (30.0,)}, [],
    )  # fmt: skip
    _, (w,) = load_plan(EXAMPLES / "code-assistant.yaml")
    spec = PlanSpec(name="c", workloads=["a"], utilisation=1.0, mip_gap=0.0, carbon_price_usd_per_t=price)
    return make_plan(spec, [w.model_copy(update={"name": "a"})], CATALOG, EFF, ENERGY, inputs=inputs)


def _mine(front: list[ParetoPoint]) -> ParetoPoint:
    (mine,) = [p for p in front if p.this_plan]
    return mine


def test_without_a_carbon_price_the_plan_is_the_cheapest_point() -> None:
    plan = _plan()
    front = pareto(plan)
    mine = _mine(front)
    assert (mine.usd_per_hour, mine.carbon_kg_per_hour) == (plan.solution.usd_per_hour, 8.0)
    assert mine == min(front, key=lambda p: p.usd_per_hour) and not mine.note
    # the lowest-carbon plan puts 6 req/s on the clean GPU and the rest on the dirty one
    assert min(front, key=lambda p: p.carbon_kg_per_hour).usd_per_hour == pytest.approx(4.0)


def test_a_plan_under_a_carbon_price_is_a_point_between_the_ends() -> None:
    plan = _plan(price=1e6)  # carbon at $1/kg: the clean GPU pays for itself
    front = pareto(plan)
    mine = _mine(front)
    assert mine.usd_per_hour == pytest.approx(4.0) and mine.carbon_price_usd_per_t == 1e6 and not mine.note
    assert min(p.usd_per_hour for p in front) == pytest.approx(1.0)


def test_a_plan_whose_carbon_is_unknown_is_marked_and_the_note_says_why_the_sweep_costs_more() -> None:
    plan = _plan(dark=True)
    assert plan.solution.usd_per_hour == pytest.approx(0.5)  # the accelerator that publishes no power
    front = pareto(plan)
    mine = _mine(front)
    assert not mine.counted and mine.carbon_unknown_share == pytest.approx(1.0)
    assert "where carbon is unknown" in mine.note and "its cheapest plan costs $1.00/h" in mine.note
    assert min(p.usd_per_hour for p in front if p.counted) == pytest.approx(1.0)
    assert mine.to_json()["this_plan"] and mine.to_json()["note"] == mine.note


def test_the_fleet_examples_frontier_trades_cost_for_carbon_and_holds_the_plan() -> None:
    spec, workloads = load_plan(EXAMPLES / "fleet-plan.yaml")
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False)
    front = pareto(plan)
    counted = sorted((p for p in front if p.counted), key=lambda p: p.carbon_kg_per_hour)
    assert len(counted) >= 2
    for a, b in zip(counted, counted[1:], strict=False):
        assert a.carbon_kg_per_hour < b.carbon_kg_per_hour and a.usd_per_hour > b.usd_per_hour
    mine = _mine(front)
    assert mine.usd_per_hour == plan.solution.usd_per_hour
    assert mine.carbon_kg_per_hour == pytest.approx(plan.solution.carbon_g_per_hour / 1000)
    if mine.counted:  # no carbon price: the cheapest plan whose carbon is all counted is the plan
        assert mine is counted[-1]


@pytest.mark.parametrize("dark", [False, True])
def test_the_svg_rings_the_plan_and_labels_ticks_and_points(dark: bool) -> None:
    front = pareto(_plan(dark=dark))
    root = ET.fromstring(pareto_svg(front, "c & co: cost against carbon"))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "c & co: cost against carbon" in texts
    assert any(t.startswith("this plan: $") for t in texts)
    assert ("(carbon not all counted)" in next(t for t in texts if t.startswith("this plan: $"))) is dark
    for p in front:  # every point labelled with its cost and carbon
        assert any(f"${p.usd_per_hour:,.2f}/h, {p.carbon_kg_per_hour:,.3f} kg/h" in t for t in texts)
    numbers = [t for t in texts if t.replace(".", "").replace(",", "").isdigit()]
    assert len(numbers) >= 6  # tick values on both axes
    assert "carbon, kgCO2e per hour" in texts and "cost, $ per hour" in texts
    rings = [c for c in root.iter(f"{SVG}circle") if c.get("r") == "9" and c.get("fill") == "none"]
    assert len(rings) == 2  # the plan's, and the legend's
