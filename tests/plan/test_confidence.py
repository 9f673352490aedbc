"""A plan at a confidence: capacity lower and latency higher than predicted, by the model's out-of-sample error;
a more confident plan never costs less."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.perf import load_bands, load_efficiency
from flopex.plan import Margins, PlanSpec, build_inputs, make_plan
from flopex.workloads import ChatWorkload, TokenSlo

CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _workload(slo: dict[str, float]) -> ChatWorkload:
    return ChatWorkload.model_validate(
        {"name": "w", "kind": "chat", "model": "llama-3.1-8b", "slo": slo,
         "traffic": {"requests_per_s": 20, "lengths": [{"input_tokens": 500, "output_tokens": 200, "weight": 1}]}}
    )  # fmt: skip


def _spec(**fields: Any) -> PlanSpec:
    return PlanSpec(name="p", workloads=["w.yaml"], mip_gap=0.0, **fields)


def test_margins_come_from_the_shipped_bands_and_grow_with_confidence() -> None:
    bands = load_bands()
    low, high = Margins.of(_spec(confidence=0.6)), Margins.of(_spec(confidence=0.95))
    band = bands["LLM throughput"]
    assert band is not None and low.throughput == pytest.approx(band.pessimistic(0.6))
    for field in ("throughput", "ttft", "tpot", "video"):
        assert 1.0 < getattr(low, field) < getattr(high, field)
    assert Margins.of(_spec()) == Margins()


def test_without_latency_limits_a_confident_capacity_is_the_prediction_over_the_margin() -> None:
    loose = _workload({"e2e_p99_s": 1e6})
    nominal = build_inputs([loose], CATALOG, EFF, ENERGY, _spec())
    sure = build_inputs([loose], CATALOG, EFF, ENERGY, _spec(confidence=0.9))
    factor = Margins.of(_spec(confidence=0.9)).throughput
    by_id = {c.id: c for c in nominal.candidates}
    assert sure.candidates
    for c in sure.candidates:
        assert c.capacity[0] == pytest.approx(by_id[c.id].capacity[0] / factor, rel=1e-9)


def test_the_slo_is_tightened_by_the_latency_margins() -> None:
    m = replace(Margins(), ttft=1.25, tpot=2.0)
    assert m.tightened(TokenSlo(ttft_p99_s=1.0, tpot_p99_s=0.1)) == TokenSlo(ttft_p99_s=0.8, tpot_p99_s=0.05)
    assert m.tightened(TokenSlo(e2e_p99_s=10.0)) == TokenSlo(e2e_p99_s=5.0)


def test_a_more_confident_plan_never_costs_less() -> None:
    w = _workload({"ttft_p99_s": 2.0, "tpot_p99_s": 0.1})
    costs = [
        make_plan(_spec(**({} if c is None else {"confidence": c})), [w], CATALOG, EFF, ENERGY).solution.usd_per_hour
        for c in (None, 0.6, 0.8, 0.95)
    ]
    assert costs == sorted(costs) and costs[-1] > costs[0]
