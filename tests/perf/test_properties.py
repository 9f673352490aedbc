"""Invariants of the performance model, over random models, accelerators and shapes."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from flopex.catalog import load_accelerators
from flopex.errors import DoesNotFitError
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Prediction, Scenario, load_efficiency, parse_scenario, predict_llm

EFF = load_efficiency()
ACCS = load_accelerators()
MODELS = ["llama-3.1-8b", "llama-2-13b", "mixtral-8x7b", "llama-3.1-70b"]
FP8_ACCS = ["H100-SXM", "H200-SXM", "L40S", "B200", "MI300X", "GAUDI3"]
SCENARIOS = ["offline", "server", "concurrency:1", "concurrency:32"]
fast = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(model: str, acc: str, count: int, precision: str, i: int, o: int, scenario: str) -> Prediction | None:
    query = LLMQuery(resolve_model(model), ACCS.resolve(acc), count, precision, i, o, parse_scenario(scenario))  # type: ignore[arg-type]
    try:
        return predict_llm(query, EFF)
    except DoesNotFitError:
        return None


lengths = st.integers(min_value=16, max_value=2000)  # llama-2 reads 4,096 tokens in all


@fast
@given(st.sampled_from(MODELS), st.sampled_from(FP8_ACCS), st.sampled_from(["bf16", "fp8"]),
       st.sampled_from([1, 2, 4]), lengths, lengths, st.sampled_from(["offline", "concurrency:64"]))  # fmt: skip
def test_more_accelerators_never_lower_throughput(
    model: str, acc: str, precision: str, count: int, i: int, o: int, scenario: str
) -> None:
    small = run(model, acc, count, precision, i, o, scenario)
    big = run(model, acc, count * 2, precision, i, o, scenario)
    if small is not None:
        assert big is not None
        assert big.output_tokens_per_s >= small.output_tokens_per_s * (1 - 1e-9)


@fast
@given(st.sampled_from(MODELS), st.sampled_from(FP8_ACCS), st.integers(1, 2000), st.integers(1, 2000),
       st.integers(16, 2000), st.sampled_from(["concurrency:1", "concurrency:8"]))  # fmt: skip
def test_tpot_never_falls_when_the_context_grows(model: str, acc: str, a: int, b: int, o: int, scenario: str) -> None:
    short, long = sorted((a, b))
    p1 = run(model, acc, 8, "fp8", short, o, scenario)
    p2 = run(model, acc, 8, "fp8", long, o, scenario)
    if p1 is not None and p2 is not None and p1.layout == p2.layout:
        assert p2.point.tpot_s >= p1.point.tpot_s * (1 - 1e-9)


@fast
@given(st.sampled_from(MODELS), st.sampled_from(FP8_ACCS), st.sampled_from([1, 2, 8]), lengths, lengths,
       st.sampled_from(SCENARIOS))  # fmt: skip
def test_fp8_is_never_slower_than_bf16_where_the_hardware_has_fp8(
    model: str, acc: str, count: int, i: int, o: int, scenario: str
) -> None:
    bf16 = run(model, acc, count, "bf16", i, o, scenario)
    fp8 = run(model, acc, count, "fp8", i, o, scenario)
    if bf16 is not None:
        assert fp8 is not None
        assert fp8.output_tokens_per_s >= bf16.output_tokens_per_s * (1 - 1e-9)
        if scenario == "concurrency:1":
            assert fp8.point.tpot_s <= bf16.point.tpot_s * (1 + 1e-9)


@fast
@given(st.sampled_from(MODELS), st.sampled_from(FP8_ACCS), st.floats(1.0, 4.0), lengths, lengths)
def test_more_memory_bandwidth_never_slows_decode(model: str, acc: str, factor: float, i: int, o: int) -> None:
    base = ACCS.resolve(acc)
    faster = base.model_copy(update={"memory_bandwidth_tb_s": base.memory_bandwidth_tb_s * factor})
    queries = [
        LLMQuery(resolve_model(model), a, 8, "fp8", i, o, parse_scenario("concurrency:1")) for a in (base, faster)
    ]
    try:
        slow, quick = (predict_llm(q, EFF) for q in queries)
    except DoesNotFitError:
        return
    assert quick.point.tpot_s <= slow.point.tpot_s * (1 + 1e-9)


@fast
@given(st.sampled_from([*MODELS, "deepseek-v3", "qwen3-235b-a22b", "llama-3.1-405b"]),
       st.sampled_from([*FP8_ACCS, "A100-SXM-80GB", "L4", "TPU-V5P", "TRAINIUM2"]),
       st.sampled_from([1, 2, 8, 16, 64]), st.sampled_from(["bf16", "fp8", "int4"]), lengths, lengths,
       st.sampled_from([*SCENARIOS, "interactive"]))  # fmt: skip
def test_every_output_is_finite_and_positive(
    model: str, acc: str, count: int, precision: str, i: int, o: int, scenario: str
) -> None:
    if not ACCS.resolve(acc).runs(precision) and precision != "int4":  # type: ignore[arg-type]
        return
    p = run(model, acc, count, precision, i, o, scenario)
    if p is None:
        return
    j = p.to_json()
    for key in ("output_tokens_per_s", "requests_per_s", "ttft_s", "tpot_s", "ttft_p99_s", "tpot_p99_s",
                "batch_size", "compute_utilization", "memory_utilization"):  # fmt: skip
        assert math.isfinite(j[key]) and j[key] > 0, key
    assert j["kv_capacity_tokens"] >= i + o
    assert j["compute_utilization"] <= 1 and j["memory_utilization"] <= 1


def _rate(acc: str, prompt: int, o: int, slo: tuple[float, float], burstiness: float) -> float:
    scenario = Scenario("server", 0, slo[0], slo[1], burstiness=burstiness)
    p = predict_llm(LLMQuery(resolve_model("llama-3.1-8b"), ACCS.resolve(acc), 1, "fp8", prompt, o, scenario), EFF)
    return p.requests_per_s if p.slo_met else 0.0


def _lone_ttft(acc: str, prompt: int, o: int) -> float:
    lone = Scenario("concurrency", 1, math.inf, math.inf)
    query = LLMQuery(resolve_model("llama-3.1-8b"), ACCS.resolve(acc), 1, "fp8", prompt, o, lone)
    return predict_llm(query, EFF).point.ttft_s


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["H100-SXM", "L40S", "B200"]), st.integers(64, 6000), st.integers(8, 500),
       st.sampled_from([(2.0, 0.2), (0.5, 0.05), (0.15, 0.05)]), st.floats(1.0, 12.0))  # fmt: skip
@example("L40S", 1808, 283, (0.15, 0.05), 12.0)
def test_burstier_traffic_or_longer_prompts_never_raise_the_sustainable_rate(
    acc: str, i: int, o: int, slo: tuple[float, float], burstiness: float
) -> None:
    """Where the TTFT limit leaves room (five times a lone request's TTFT): at the edge, see the known flaw below."""
    base = _rate(acc, i, o, slo, 1.0)
    assert _rate(acc, i + 500, o, slo, 1.0) <= base * (1 + 1e-6)
    assume(slo[0] >= 5 * _lone_ttft(acc, i, o))
    assert _rate(acc, i, o, slo, burstiness) <= base * (1 + 1e-6)


@pytest.mark.xfail(
    strict=True,
    reason="known flaw (docs/performance.md): at a TTFT limit near a lone prefill, the TTFT model draws the prompts "
    "that share a request's step from the window's count, not the Palm count a request arriving in a burst sees, so "
    "bursty traffic comes out up to 3.2x faster; a constant-dispersion Palm correction overshoots at windows of few "
    "arrivals (it broke verified plans, 2026-11-29)",
)
def test_bursts_never_raise_the_rate_at_the_ttft_edge() -> None:
    assert _rate("H100-SXM", 6000, 8, (0.15, 0.05), 12.0) <= _rate("H100-SXM", 6000, 8, (0.15, 0.05), 1.0)
