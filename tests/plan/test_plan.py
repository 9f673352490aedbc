"""Plans for the shipped examples: feasibility, explanations, the single-offer baseline, Pareto and
infeasibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.errors import PlanError
from flopex.perf import load_efficiency
from flopex.plan import (
    Candidate,
    Demand,
    Hosted,
    Inputs,
    PlanSpec,
    SpotPolicy,
    build_inputs,
    effective_utilisation,
    load_plan,
    make_plan,
    options_for,
    plan_document,
)
from flopex.workloads import AgentWorkload, Workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _plan(name: str, **update: object):  # type: ignore[no-untyped-def]
    spec, workloads = load_plan(EXAMPLES / name)
    return make_plan(spec.model_copy(update=update), workloads, CATALOG, EFF, ENERGY)


@pytest.mark.parametrize(
    "name", ["fleet-plan.yaml", "enterprise-chat-70b.yaml", "video-service.yaml", "agent-fleet.yaml"]
)
def test_every_serving_example_has_a_feasible_plan(name: str) -> None:
    plan = _plan(name)
    j = plan_document(plan, CATALOG, EFF).to_json()
    assert j["status"] in ("optimal", "time_limit") and j["plan_schema_version"] == 2
    assert j["solver"]["gap"] <= 0.01 + 1e-9
    assert j["usd_per_hour"] == pytest.approx(sum(line["usd_per_hour"] for line in j["deployments"]))
    for w in j["workloads"]:
        for bucket in w["buckets"]:
            assert sum(bucket["shares"].values()) == pytest.approx(1.0)
    for line in j["deployments"]:
        if line["utilisation"] is not None:
            assert line["utilisation"] <= plan.spec.utilisation + 1e-6  # the plan's utilisation target


def test_the_fleet_plan_explains_its_binding_constraints() -> None:
    plan = _plan("fleet-plan.yaml")
    j = plan_document(plan, CATALOG, EFF).to_json()
    groups = {b["constraint"] for b in j["explanation"]["binding"]}
    assert "on_demand_floor" in groups  # a share of each slice off spot costs more than spot alone
    for b in j["explanation"]["binding"]:
        assert b["usd_per_hour_without"] == pytest.approx(j["usd_per_hour"] - b["costs_usd_per_hour"])
        assert b["costs_usd_per_hour"] > 0
    # each workload runs in at least two regions
    cands = {c.id: c for c in plan.inputs.candidates}
    for name in ("enterprise-chat-70b", "code-assistant"):
        domains = {cands[cid].domain("region") for cid in plan.solution.groups if cands[cid].workload == name}
        assert len(domains) >= 2, (name, domains)


def test_without_constraints_the_plan_never_costs_more_than_the_single_offer_baseline() -> None:
    plan = _plan("fleet-plan.yaml", min_failure_domains=1, spot=SpotPolicy())
    j = plan_document(plan, CATALOG, EFF).to_json()
    same = j["explanation"]["single_offer_same_rules"]
    assert same["rules_left_out"] == [] and j["explanation"]["single_offer_without_domains"] is None
    assert j["usd_per_hour"] <= same["usd_per_hour"] + 1e-6 and same["saving"] >= 0


def test_an_infeasible_plan_says_which_relaxation_helps() -> None:
    plan = _plan("enterprise-chat-70b.yaml", carbon_cap_kg_per_hour=1e-6, min_failure_domains=2)
    j = plan_document(plan, CATALOG, EFF).to_json()
    assert j["status"] == "infeasible"
    relaxed = {r["constraint"]: r["usd_per_hour"] for r in j["relaxations"]}
    assert relaxed["carbon"] is not None  # dropping the cap works; dropping the domains alone does not
    assert relaxed["domains"] is None


def test_a_training_workload_is_pointed_to_quote() -> None:
    spec, workloads = load_plan(EXAMPLES / "fine-tune-8b.yaml")
    with pytest.raises(PlanError, match="flopex quote"):
        make_plan(spec, workloads, CATALOG, EFF, ENERGY)


def test_plan_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nworkloads: [x.yaml]\nutilization: 0.8\n")
    with pytest.raises(PlanError, match="utilization: .*Did you mean 'utilisation'"):
        load_plan(bad)


def test_owned_servers_are_sunk_cost_up_to_their_capacity_and_a_site_power_budget_binds(tmp_path: Path) -> None:
    overlay = Path(__file__).resolve().parents[1] / "fixtures" / "overlays" / "negotiated.yaml"
    catalog = load_catalog([overlay])
    owned = [o for o in catalog.offers if o.market == "owned" and o.accelerator == "H100-SXM"]
    assert owned and owned[0].capacity == 16
    spec, workloads = load_plan(EXAMPLES / "agent-fleet.yaml")
    assert isinstance(workloads[0], AgentWorkload)
    many = workloads[0].model_copy(
        update={"traffic": workloads[0].traffic.model_copy(update={"concurrent_sessions": 3000})}
    )
    sunk = spec.model_copy(update={"sunk_cost": ("owned",), "mip_gap": 0.0})  # exact: a 1% gap may leave one idle
    plan = make_plan(sunk, [many], catalog, EFF, ENERGY)
    cands = {c.id: c for c in plan.inputs.candidates}
    on_owned = sum(n * cands[c].instances for c, n in plan.solution.groups.items() if cands[c].offer == owned[0].id)
    assert on_owned == 16  # all of the free servers, and no more than exist
    assert plan.solution.usd_per_hour > 0  # the rest is bought
    site = f"{owned[0].provider}/{owned[0].region}"
    budget = sunk.model_copy(update={"power_budget_kw": {site: 30.0}})
    limited = make_plan(budget, [many], catalog, EFF, ENERGY)
    assert limited.solution.usd_per_hour > plan.solution.usd_per_hour
    assert any(b.group == "power" for b in limited.binding)


def test_interruption_rate_is_a_chance_per_hour_and_recovery_time_sizes_spot_groups(tmp_path: Path) -> None:
    overlay = tmp_path / "spot.yaml"
    overlay.write_text(
        "offers:\n  - {provider: aws, region: us-east-1, instance_type: g6.xlarge, accelerator: L4,"
        " accelerator_count: 1, market: spot, price_usd_per_hour: 0.3, interruption_rate: 0.3,"
        " source: test, as_of: 2026-11-01}\n"
    )
    catalog = load_catalog([overlay])
    spec, workloads = load_plan(EXAMPLES / "code-assistant.yaml")
    spec = spec.model_copy(update={"spot": SpotPolicy(interruption_rate=0.02, recovery_s=600)})
    inputs = build_inputs(workloads, catalog, EFF, ENERGY, spec)
    options = options_for(spec, inputs)
    ours = [c for c in inputs.candidates if c.offer == "aws/us-east-1/g6.xlarge/spot"]
    others = [c for c in inputs.candidates if c.spot and c.offer != "aws/us-east-1/g6.xlarge/spot"]
    assert ours and others
    assert {c.interruption_rate for c in ours} == {0.3}  # the offer's own chance per hour, as the catalog says
    assert {c.interruption_rate for c in others} == {0.02}  # the plan's default for offers that publish none
    # 0.3 interruptions per hour x 10 minutes each = 5% of the capacity lost
    assert effective_utilisation(ours[0], options) == pytest.approx(spec.utilisation * 0.95)
    assert effective_utilisation(others[0], options) == pytest.approx(spec.utilisation * (1 - 0.02 / 6))
    on_demand = next(c for c in inputs.candidates if not c.spot)
    assert effective_utilisation(on_demand, options) == pytest.approx(spec.utilisation)


def test_spot_recovery_time_is_checked_and_named(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("name: p\nworkloads: [x.yaml]\nspot: {recovery_s: 0}\n")
    with pytest.raises(PlanError, match=r"spot\.recovery_s"):
        load_plan(bad)


def _two_workloads_of_one_model() -> list[Workload]:
    _, (w,) = load_plan(EXAMPLES / "code-assistant.yaml")
    return [w.model_copy(update={"name": "a"}), w.model_copy(update={"name": "b"})]


def test_a_hosted_api_shared_by_two_workloads_is_priced_per_workload() -> None:
    workloads = _two_workloads_of_one_model()
    inputs = Inputs(
        candidates=[Candidate(f"{w}|gpu|fp8|x1", w, "gpu", "gpu", 50.0, (10.0,)) for w in "ab"],
        demands=[Demand("a", (2.0,), ("short",)), Demand("b", (5.0,), ("long",))],
        hosted=[Hosted("api", "a", (0.0001,)), Hosted("api", "b", (0.002,))],  # the same API, per-bucket prices
        offer_capacity={}, units={"a": "requests/s", "b": "requests/s"}, output_tokens={"a": (30.0,), "b": (300.0,)},
        skipped=[],
    )  # fmt: skip
    spec = PlanSpec(name="shared", workloads=["a", "b"])
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False, inputs=inputs)
    j = plan_document(plan, CATALOG, EFF).to_json()
    by_workload = {line["workload"]: line["usd_per_hour"] for line in j["deployments"] if line["offer"] == "api"}
    # by hand: 2 req/s x 3600 s x $0.0001 = $0.72/h; 5 req/s x 3600 s x $0.002 = $36/h (cheaper than a $50 GPU)
    assert by_workload == {"a": pytest.approx(0.72), "b": pytest.approx(36.0)}
    assert j["usd_per_hour"] == pytest.approx(36.72)
    assert sum(line["usd_per_hour"] for line in j["deployments"]) == pytest.approx(j["usd_per_hour"])
    assert {w["name"]: w["usd_per_hour"] for w in j["workloads"]} == {
        "a": pytest.approx(0.72),
        "b": pytest.approx(36.0),
    }


def _carbon_inputs() -> Inputs:
    """10 req/s: a dirty GPU ($1/h, 800 g/kWh), a clean one ($3/h, 50 g/kWh, one instance of 6 req/s), and a
    cheaper accelerator that publishes no power ($0.50/h)."""
    dirty = Candidate("a|dirty|fp8|x1", "a", "dirty", "dirty", 1.0, (10.0,), busy_kw=10.0, grid_g_per_kwh=800.0)
    clean = Candidate("a|clean|fp8|x1", "a", "clean", "clean", 3.0, (6.0,), busy_kw=10.0, grid_g_per_kwh=50.0)
    dark = Candidate("a|dark|fp8|x1", "a", "dark", "dark", 0.5, (10.0,), power_known=False)
    return Inputs(
        [dirty, clean, dark],
        [Demand("a", (10.0,), ("all",))],
        [],
        {"clean": 1},
        {"a": "requests/s"},
        {"a": (30.0,)},
        [],
    )


def _explained(cap_kg_per_hour: float) -> dict[str, tuple[float | None, float | None, str]]:
    spec = PlanSpec(name="c", workloads=["a"], utilisation=1.0, carbon_cap_kg_per_hour=cap_kg_per_hour, mip_gap=0)
    plan = make_plan(spec, _two_workloads_of_one_model()[:1], CATALOG, EFF, ENERGY, inputs=_carbon_inputs())
    j = plan_document(plan, CATALOG, EFF).to_json()
    lines = j["explanation"]["binding"] if j["status"] == "optimal" else j["relaxations"]
    out: dict[str, tuple[float | None, float | None, str]] = {"plan": (j["usd_per_hour"], None, j["status"])}
    for b in lines:
        out[b["constraint"]] = (
            b.get("costs_usd_per_hour"),
            b.get("usd_per_hour_without", b.get("usd_per_hour")),
            b["text"],
        )
    return out


def test_a_carbon_cap_that_does_not_bind_costs_nothing_and_the_exclusion_is_told_apart() -> None:
    e = _explained(1000.0)  # 1 t/h: the dirty GPU alone emits 8 kg/h
    assert e["plan"][0] == pytest.approx(1.0)
    assert "carbon" not in e
    cost, without, text = e["unknown_power"]
    assert cost == pytest.approx(0.5) and without == pytest.approx(0.5)  # the $0.50 accelerator instead of the $1 GPU
    assert text == "offers without published power are excluded because carbon is capped"


def test_a_binding_carbon_cap_costs_what_it_forces_and_no_more() -> None:
    e = _explained(6.0)  # the dirty GPU may carry at most 7.2 of 10 req/s: the clean one must take the rest
    assert e["plan"][0] == pytest.approx(4.0)
    cost, without, text = e["carbon"]
    assert cost == pytest.approx(3.0) and without == pytest.approx(1.0) and text == "the carbon cap"
    cost, without, _ = e["unknown_power"]
    assert cost == pytest.approx(0.5) and without == pytest.approx(0.5)


def test_dropping_an_impossible_carbon_cap_also_admits_the_offers_it_left_out() -> None:
    e = _explained(1e-6)
    assert e["plan"][2] == "infeasible"
    assert e["carbon"][1] == pytest.approx(0.5)  # what the plan costs once the cap is gone from the plan file
