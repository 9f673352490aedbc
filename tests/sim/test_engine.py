"""The simulator against the performance model's closed forms, queueing theory, plans and faults."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.models import resolve_model
from flopex.perf import Batch, LLMQuery, Replica, Scenario, load_efficiency, predict_llm, replica_for
from flopex.perf._serving import prefill_time
from flopex.plan import PlanSpec, make_plan
from flopex.sim import (
    Fault,
    SimOptions,
    SimReplica,
    generate,
    replicas_from_plan,
    report,
    requests_from_trace,
    simulate,
    verify_plan,
)
from flopex.workloads import ChatWorkload, LengthBucket, TokenSlo, load_workload_text

CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BUCKET = [LengthBucket(input_tokens=1000, output_tokens=200, weight=1.0)]


def _replica(spot: bool = False, rate: float = 0.0, kv_tokens: int | None = None) -> tuple[SimReplica, float]:
    q = LLMQuery(resolve_model("llama-3.1-8b"), CATALOG.accelerators.resolve("H100-SXM"), 1, "fp8", 1000, 200,
                 Scenario("server", 0, 2.0, 0.2))  # fmt: skip
    p = predict_llm(q, EFF)
    model: Replica = replica_for(p, EFF)
    if kv_tokens is not None:
        model = replace(model, memory=replace(model.memory, kv_capacity_tokens=kv_tokens))
    return SimReplica("r0", "g", frozenset({"w"}), model, {("w", 0): 1.0}, spot, rate), p.requests_per_s


def test_at_low_load_latency_converges_to_the_closed_form() -> None:
    rep, _ = _replica()
    reqs = generate("poisson", 0.2, 1200, "w", BUCKET, random.Random(1))
    done = simulate(reqs, [rep], SimOptions(seed=1)).completed
    ttft = sum(c.ttft for c in done) / len(done)
    tpot = sum(c.tpot for c in done) / len(done)
    m = rep.model
    expected_ttft = prefill_time(m, 1000, 0.0, 1000) + m.engine.request_overhead_s
    expected_tpot = m.step(Batch(1, 1100, 0.0, 0.0, 1)).total_s
    assert ttft == pytest.approx(expected_ttft, rel=0.10)
    assert tpot == pytest.approx(expected_tpot, rel=0.10)


def test_latency_grows_with_load_and_littles_law_holds() -> None:
    rep, capacity = _replica()
    previous = 0.0
    for load in (0.2, 0.5, 0.8, 0.95):
        reqs = generate("poisson", capacity * load, 300, "w", BUCKET, random.Random(2))
        result = simulate(reqs, [rep], SimOptions(seed=2))
        data = report(result, [rep], {"w": TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)}, 1.0).data
        e2e = data["workloads"]["w"]["e2e_s"]["mean"]
        assert e2e > previous
        previous = e2e
        little = data["littles_law"]
        assert little["mean_in_system"] == pytest.approx(little["throughput_x_mean_e2e"], rel=0.03)


def test_the_same_seed_gives_the_same_run() -> None:
    rep, capacity = _replica(spot=True, rate=2.0)
    reqs = generate("gamma", capacity * 0.5, 600, "w", BUCKET, random.Random(5))
    a = simulate(reqs, [rep, SimReplica("r1", "g", rep.workloads, rep.model, rep.shares)], SimOptions(seed=9))
    b = simulate(reqs, [rep, SimReplica("r1", "g", rep.workloads, rep.model, rep.shares)], SimOptions(seed=9))
    assert [(c.request.id, c.finish) for c in a.completed] == [(c.request.id, c.finish) for c in b.completed]


def test_faults_and_spot_preemptions_reroute_and_lose_nothing() -> None:
    rep, capacity = _replica(spot=True, rate=30.0)  # about one preemption every two minutes
    other = SimReplica("r1", "g", rep.workloads, rep.model, rep.shares)
    reqs = generate("poisson", capacity * 0.6, 900, "w", BUCKET, random.Random(3))
    result = simulate(reqs, [rep, other], SimOptions(seed=3, faults=(Fault("r1", 100.0, 60.0),)))
    assert len(result.completed) == len(reqs) and not result.dropped
    assert len(result.spot_preemptions) >= 3
    assert any(r == "r1" and n > 0 for _, r, n in result.spot_preemptions)
    assert any(c.preemptions for c in result.completed)


def test_a_small_kv_cache_preempts_and_recomputes() -> None:
    rep, capacity = _replica(kv_tokens=6000)
    # short prompts are admitted on a few hundred free tokens; their 1,000-token outputs then outgrow the cache
    growing = [LengthBucket(input_tokens=200, output_tokens=1000, weight=1.0)]
    reqs = generate("poisson", 2.0, 120, "w", growing, random.Random(4))
    result = simulate(reqs, [rep], SimOptions(seed=4))
    assert len(result.completed) == len(reqs)
    assert result.preemptions["r0"] > 0


def _conv_plan(scale: float) -> tuple[ChatWorkload, list[SimReplica], list[tuple[str, int, int]], float]:
    text = "name: conv\nkind: chat\nmodel: llama-3.1-8b\nprecisions: [fp8, bf16]\n"
    text += "traffic:\n  trace: azure-conv-10min.csv\n"
    w = load_workload_text(FIXTURES / "conv.yaml", text)
    assert isinstance(w, ChatWorkload)
    rate = (w.traffic.requests_per_s or 0) * scale
    w = w.model_copy(update={"traffic": w.traffic.model_copy(update={"requests_per_s": rate})})
    with (FIXTURES / "azure-conv-10min.csv").open() as handle:
        rows = [(r["TIMESTAMP"], int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in csv.DictReader(handle)]
    plan = make_plan(PlanSpec(name="conv", workloads=["-"]), [w], CATALOG, EFF, ENERGY, explain=False)
    plan = verify_plan(plan, CATALOG, EFF, ENERGY, {w.name: rows}).plan  # the plan `flopex plan` prints
    reps = replicas_from_plan(plan, CATALOG, EFF)
    return w, reps, rows, plan.solution.usd_per_hour


def test_a_plan_meets_its_slo_on_the_trace_it_was_planned_for_and_half_of_it_does_not() -> None:
    w, reps, rows, usd = _conv_plan(10.0)
    reqs = requests_from_trace(rows, w.name, w.traffic.buckets(), rate_scale=10.0)
    slo = w.slo
    full = report(simulate(reqs, reps, SimOptions(seed=1)), reps, {w.name: slo}, usd).data
    assert full["workloads"][w.name]["slo_attainment"] >= 0.99
    half = reps[: max(1, len(reps) // 2)]
    assert len(half) < len(reps)
    cut = report(simulate(reqs, half, SimOptions(seed=1)), half, {w.name: slo}, usd).data
    assert cut["workloads"][w.name]["slo_attainment"] < 0.9
