"""The simulator labels every request through the gateway's meter: per replica, the labels plus its idle cost
are its $/h over the horizon (energy likewise); a plan's replicas carry their price; longer prompts cost more."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for
from flopex.plan import PlanSpec, make_plan
from flopex.sim import (
    Fault,
    SimOptions,
    SimReplica,
    generate,
    meter_requests,
    replicas_from_plan,
    report,
    requests_from_trace,
    simulate,
)
from flopex.workloads import ChatWorkload, LengthBucket, TokenSlo, load_workload_text

CATALOG = load_catalog()
EFF = load_efficiency()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SLO = TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)


def _replicas() -> list[SimReplica]:
    q = LLMQuery(resolve_model("llama-3.1-8b"), CATALOG.accelerators.resolve("H100-SXM"), 1, "fp8", 1000, 200,
                 Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    model = replica_for(predict_llm(q, EFF), EFF)
    shares = {("w", 0): 0.5, ("w", 1): 0.5}
    return [
        SimReplica(
            f"r{i}",
            "g",
            frozenset({"w"}),
            model,
            shares,
            busy_w=900.0,
            idle_w=200.0,
            usd_per_hour=2.95,
            grid_gco2e_per_kwh=300.0,
        )  # fmt: skip
        for i in range(2)
    ]


def test_labels_plus_idle_are_each_replicas_cost_over_the_horizon() -> None:
    buckets = [LengthBucket(input_tokens=100, output_tokens=200, weight=0.5),
               LengthBucket(input_tokens=8000, output_tokens=200, weight=0.5)]  # fmt: skip
    reqs = generate("poisson", 3.0, 600, "w", buckets, random.Random(3))
    reps = _replicas()
    result = simulate(reqs, reps, SimOptions(seed=3, faults=(Fault("r1", 60.0, 20.0),)))
    labels = report(result, reps, {"w": SLO}, 2 * 2.95).data["labels"]
    horizon = result.horizon_s
    assert labels["replicas_usd"] == pytest.approx(2 * 2.95 / 3600 * horizon)
    assert labels["labelled_usd"] + labels["idle_usd"] == pytest.approx(labels["replicas_usd"], rel=1e-9)
    assert labels["workloads"]["w"]["cost_usd"] == pytest.approx(labels["labelled_usd"], rel=1e-12)
    assert labels["workloads"]["w"]["requests"] == len(result.completed) == len(reqs)
    for r in labels["replicas"].values():
        assert r["labelled_usd"] + r["idle_usd"] == pytest.approx(r["backend_usd"], rel=1e-9)
        assert r["labelled_kwh"] + r["idle_kwh"] == pytest.approx(r["backend_kwh"], rel=1e-9)
        assert 0 < r["busy_share"] < 1
    charged, _ = meter_requests(result, reps)
    assert all(charge.usd > 0 for _, charge in charged)
    long = [ch.usd for c, ch in charged if c.request.input_tokens > 1000]
    short = [ch.usd for c, ch in charged if c.request.input_tokens <= 1000]
    assert sum(long) / len(long) > sum(short) / len(short)  # same answers, longer prompts


def test_a_plans_replicas_carry_their_price_and_the_labels_add_up_to_it() -> None:
    text = "name: conv\nkind: chat\nmodel: llama-3.1-8b\nprecisions: [fp8, bf16]\n"
    text += "traffic:\n  trace: azure-conv-10min.csv\n"
    w = load_workload_text(FIXTURES / "conv.yaml", text)
    assert isinstance(w, ChatWorkload)
    plan = make_plan(PlanSpec(name="conv", workloads=["-"]), [w], CATALOG, EFF, load_energy_table())
    reps = replicas_from_plan(plan, CATALOG, EFF)
    assert all(r.usd_per_hour > 0 for r in reps)
    with (FIXTURES / "azure-conv-10min.csv").open() as handle:
        rows = [(r["TIMESTAMP"], int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in csv.DictReader(handle)]
    reqs = requests_from_trace(rows, w.name, w.traffic.buckets())
    result = simulate(reqs, reps, SimOptions(seed=1))
    labels = report(result, reps, {w.name: w.slo}, plan.solution.usd_per_hour).data["labels"]
    assert labels["replicas_usd"] == pytest.approx(sum(r.usd_per_hour for r in reps) * result.horizon_s / 3600)
    assert labels["labelled_usd"] + labels["idle_usd"] == pytest.approx(labels["replicas_usd"], rel=1e-9)
    per = labels["workloads"][w.name]
    assert per["usd_per_request"] == pytest.approx(per["cost_usd"] / per["requests"])
    assert per["co2e_kg"] is None or per["co2e_kg"] > 0
