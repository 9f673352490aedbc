"""SLO-verified planning: plans are replayed in the simulator and corrected until they meet their target."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.perf import load_efficiency
from flopex.plan import load_plan, make_plan
from flopex.routing import Policy
from flopex.sim import (
    Completed,
    SimOptions,
    VerifyOptions,
    hosted_shares,
    replicas_from_plan,
    requests_from_trace,
    simulate,
    split_hosted,
    traffic_for,
    verify_plan,
)
from flopex.workloads import ChatWorkload

CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()
ROOT = Path(__file__).resolve().parents[2]
QUICK = VerifyOptions(requests=2000, measure_requests=1500)


def _trace() -> list[tuple[str, int, int]]:
    with (ROOT / "tests" / "fixtures" / "azure-conv-10min.csv").open() as handle:
        return [(r["TIMESTAMP"], int(r["ContextTokens"]), int(r["GeneratedTokens"])) for r in csv.DictReader(handle)]


def _attainment(w: ChatWorkload, done: list[Completed]) -> float:
    return sum(1 for c in done if w.slo.met(c.ttft, c.tpot, c.e2e)) / len(done)


def test_the_conversation_example_holds_on_a_slice_of_its_own_trace() -> None:
    spec, workloads = load_plan(ROOT / "examples" / "conv-assistant.yaml")
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False)
    rows = _trace()
    verified = verify_plan(plan, CATALOG, EFF, ENERGY, {"conv-assistant": rows}, QUICK)
    assert verified.met, verified.message
    assert verified.checks[0].attainment >= 0.99
    # replayed again outside the verifier, with another routing seed, the verified fleet still holds
    w = verified.plan.workloads[0]
    assert isinstance(w, ChatWorkload)
    reqs = requests_from_trace(rows, w.name, w.traffic.buckets())
    local, _ = split_hosted(reqs, hosted_shares(verified.plan), random.Random(7))
    replicas = replicas_from_plan(verified.plan, CATALOG, EFF)
    done = simulate(local, replicas, SimOptions(seed=7, policy=Policy.plan_weighted(), spot_preemptions=False))
    assert _attainment(w, done.completed) >= 0.98


def test_a_plan_that_overrates_its_hardware_is_measured_corrected_and_costs_more() -> None:
    spec, workloads = load_plan(ROOT / "examples" / "conv-assistant.yaml")
    honest = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False)
    inflated = replace(
        honest.inputs,
        candidates=[replace(c, capacity=tuple(2.5 * x for x in c.capacity)) for c in honest.inputs.candidates],
    )
    optimistic = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False, inputs=inflated)
    assert optimistic.solution.usd_per_hour < honest.solution.usd_per_hour
    verified = verify_plan(optimistic, CATALOG, EFF, ENERGY, options=QUICK)
    assert verified.met, verified.message
    first, last = verified.rounds[0], verified.rounds[-1]
    assert first.checks[0].attainment < 0.99 and first.corrections
    assert all(f < 0.7 for f in first.corrections.values())  # measured at well under the inflated figures
    assert last.checks[0].attainment >= 0.99
    assert verified.plan.solution.usd_per_hour > optimistic.solution.usd_per_hour


def test_workloads_the_simulator_cannot_replay_are_named_not_checked() -> None:
    spec, workloads = load_plan(ROOT / "examples" / "video-service.yaml")
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False)
    verified = verify_plan(plan, CATALOG, EFF, ENERGY, options=QUICK)
    assert verified.met and verified.unverified == ("video-service",)
    assert verified.checks == ()


def test_synthetic_traffic_follows_the_declared_burstiness() -> None:
    _, workloads = load_plan(ROOT / "examples" / "code-assistant.yaml")
    w = workloads[0]
    assert isinstance(w, ChatWorkload)

    def dispersion(burstiness: float) -> float:
        bursty = w.model_copy(update={"traffic": w.traffic.model_copy(update={"burstiness": burstiness})})
        reqs = traffic_for(bursty, 20_000, random.Random(3))
        per_second: dict[int, int] = {}
        for r in reqs:
            per_second[int(r.arrival)] = per_second.get(int(r.arrival), 0) + 1
        counts = [per_second.get(s, 0) for s in range(int(reqs[-1].arrival))]
        mean = sum(counts) / len(counts)
        return sum((x - mean) ** 2 for x in counts) / len(counts) / mean

    assert 0.8 < dispersion(1.0) < 1.2
    assert 7 < dispersion(11.0) < 15


@pytest.mark.parametrize("example", ["code-assistant.yaml", "enterprise-chat-70b.yaml", "fleet-plan.yaml"])
def test_every_shipped_example_is_verified_to_hold(example: str) -> None:
    spec, workloads = load_plan(ROOT / "examples" / example)
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False)
    verified = verify_plan(plan, CATALOG, EFF, ENERGY, options=QUICK)
    assert verified.met, verified.message
    assert all(c.attainment >= 0.99 and c.requests >= 1000 for c in verified.checks)
    assert {c.workload for c in verified.checks} == {w.name for w in workloads}
