from __future__ import annotations

import math

import pytest

from flopex.catalog import AcceleratorTable
from flopex.errors import DoesNotFitError, PerfError, UnsupportedPrecisionError
from flopex.models import resolve_model
from flopex.perf import Efficiency, LLMQuery, parse_scenario, predict_llm, profile


def q(accs: AcceleratorTable, model: str, acc: str, count: int, precision: str, i: int = 1000, o: int = 1000,
      scenario: str = "offline", **kw: object) -> LLMQuery:  # fmt: skip
    return LLMQuery(resolve_model(model), accs.resolve(acc), count, precision, i, o, parse_scenario(scenario), **kw)  # type: ignore[arg-type]


def test_fp8_needs_fp8_units_and_the_error_names_what_the_chip_runs(accs: AcceleratorTable, eff: Efficiency) -> None:
    with pytest.raises(UnsupportedPrecisionError, match="A100-SXM-80GB has no native fp8.*bf16, fp16, int8"):
        predict_llm(q(accs, "llama-3.1-8b", "A100-SXM-80GB", 1, "fp8"), eff)
    with pytest.raises(UnsupportedPrecisionError, match="fp4"):
        predict_llm(q(accs, "llama-3.1-8b", "H100-SXM", 1, "fp4"), eff)
    assert predict_llm(q(accs, "llama-3.1-8b", "B200", 1, "fp4"), eff).output_tokens_per_s > 0


def test_int4_is_weight_only_on_16_bit_units(accs: AcceleratorTable, eff: Efficiency) -> None:
    p = predict_llm(q(accs, "llama-3.1-70b", "A100-SXM-80GB", 1, "int4"), eff)
    assert p.memory.weights < 40e9
    assert p.peak_flops == pytest.approx(312e12)


def test_a_model_that_does_not_fit_says_what_would(accs: AcceleratorTable, eff: Efficiency) -> None:
    with pytest.raises(DoesNotFitError) as info:
        predict_llm(q(accs, "llama-3.1-405b", "H100-SXM", 8, "bf16"), eff)
    message = str(info.value)
    assert "811.7 GB of weights" in message
    assert "--count 16" in message and "--precision fp8" in message


def test_405b_at_bf16_on_80gb_cards_uses_pipeline_stages(accs: AcceleratorTable, eff: Efficiency) -> None:
    p = predict_llm(q(accs, "llama-3.1-405b", "H100-SXM", 16, "bf16"), eff)
    assert (p.layout.tensor_parallel, p.layout.pipeline_parallel) == (8, 2)
    # where one domain holds the model, no pipeline stages
    assert predict_llm(q(accs, "llama-3.1-70b", "H100-SXM", 8, "fp8"), eff).layout.pipeline_parallel == 1


def test_fixed_tensor_parallel_is_respected(accs: AcceleratorTable, eff: Efficiency) -> None:
    p = predict_llm(q(accs, "llama-3.1-70b", "H100-SXM", 8, "fp8", tensor_parallel=8), eff)
    assert (p.layout.tensor_parallel, p.layout.replicas) == (8, 1)


def test_slo_scenarios_trade_throughput_for_latency(accs: AcceleratorTable, eff: Efficiency) -> None:
    results = {s: predict_llm(q(accs, "llama-3.1-70b", "H100-SXM", 8, "fp8", scenario=s), eff)
               for s in ("offline", "server", "interactive")}  # fmt: skip
    assert results["interactive"].output_tokens_per_s <= results["server"].output_tokens_per_s
    assert results["server"].output_tokens_per_s <= results["offline"].output_tokens_per_s
    for name in ("server", "interactive"):
        p = results[name]
        assert p.slo_met
        assert p.point.ttft_p99_s <= p.query.scenario.ttft_slo_s + 1e-9
        assert p.point.tpot_p99_s <= p.query.scenario.tpot_slo_s + 1e-9
        assert p.point.ttft_p99_s >= p.point.ttft_s and p.point.tpot_p99_s >= p.point.tpot_s


def test_an_impossible_slo_is_reported_not_hidden(accs: AcceleratorTable, eff: Efficiency) -> None:
    query = LLMQuery(resolve_model("llama-3.1-70b"), accs.resolve("L40S"), 4, "fp8", 1000, 1000,
                     parse_scenario("server", 0.5, 0.001))  # fmt: skip
    p = predict_llm(query, eff)
    assert not p.slo_met and p.bound == "slo"


def test_closed_loop_obeys_littles_law(accs: AcceleratorTable, eff: Efficiency) -> None:
    p = predict_llm(q(accs, "llama-3.1-8b", "H100-SXM", 1, "fp8", 2000, 500, "concurrency:16"), eff)
    cycle = p.point.ttft_s + 500 * p.point.tpot_s
    assert p.requests_per_s * cycle == pytest.approx(16, rel=1e-6)


def test_one_request_decodes_at_the_weight_streaming_speed(accs: AcceleratorTable, eff: Efficiency) -> None:
    # batch 1 on one H100: each token reads all 8 GB of FP8 weights; it cannot beat the datasheet bandwidth
    p = predict_llm(q(accs, "llama-3.1-8b", "H100-SXM", 1, "fp8", 500, 500, "concurrency:1"), eff)
    floor = p.memory.weights / 3.35e12
    assert floor < p.point.tpot_s
    assert p.point.tpot_s - p.point.step.overhead_s < 2 * floor


def test_moe_decode_reads_only_the_experts_it_touches(accs: AcceleratorTable, eff: Efficiency) -> None:
    p = predict_llm(q(accs, "mixtral-8x7b", "H100-SXM", 1, "fp8", 200, 200, "concurrency:1"), eff)
    assert p.point.step.bytes < 0.5 * p.memory.weights  # 2 of 8 experts per layer at batch 1


def test_profile_is_the_server_rate_and_grows_with_looser_slos(accs: AcceleratorTable, eff: Efficiency) -> None:
    model, acc = resolve_model("llama-3.1-8b"), accs.resolve("L4")
    tight = profile(model, acc, 1, "fp8", 512, 256, 1.0, 0.05, eff)
    loose = profile(model, acc, 1, "fp8", 512, 256, 5.0, 0.2, eff)
    assert 0 < tight <= loose
    assert profile(model, acc, 1, "fp8", 512, 256, 0.001, 0.05, eff) == 0.0
    assert profile(resolve_model("llama-3.1-405b"), acc, 1, "fp8", 512, 256, 2, 0.2, eff) == 0.0


@pytest.mark.parametrize("text", ["fast", "concurrency:0", "concurrency:x"])
def test_bad_scenarios_are_rejected(text: str) -> None:
    with pytest.raises(PerfError, match="scenario"):
        parse_scenario(text)


def test_json_contract_keys(accs: AcceleratorTable, eff: Efficiency) -> None:
    j = predict_llm(q(accs, "llama-3.1-70b", "H100-SXM", 8, "fp8"), eff).to_json()
    for key in ("output_tokens_per_s", "ttft_s", "tpot_s", "batch_size", "tensor_parallel", "replicas",
                "kv_capacity_tokens", "bound", "compute_utilization", "memory_utilization"):  # fmt: skip
        assert key in j
    assert j["bound"] in ("compute", "memory", "capacity", "slo")
    assert all(math.isfinite(j[k]) and j[k] > 0 for k in ("output_tokens_per_s", "ttft_s", "tpot_s"))
    assert 0 < j["compute_utilization"] < 1 and 0 < j["memory_utilization"] < 1


@pytest.mark.parametrize("tp", [3, 16])
def test_an_impossible_tensor_parallel_degree_lists_the_possible_ones(
    accs: AcceleratorTable, eff: Efficiency, tp: int
) -> None:
    with pytest.raises(PerfError, match="Choose from: 1, 2, 4, 8"):
        predict_llm(q(accs, "llama-3.1-70b", "H100-SXM", 16, "fp8", tensor_parallel=tp), eff)


def test_precision_errors_suggest_the_nearest_one_and_the_right_flag(accs: AcceleratorTable, eff: Efficiency) -> None:
    with pytest.raises(UnsupportedPrecisionError, match="pass --precision fp8"):
        predict_llm(q(accs, "llama-3.1-8b", "H100-SXM", 1, "fp4"), eff)
    with pytest.raises(PerfError, match="--kv-precision fp4.*pass fp8 or bf16"):
        predict_llm(q(accs, "llama-3.1-8b", "B200", 1, "fp4", kv_precision="fp4"), eff)
    with pytest.raises(UnsupportedPrecisionError, match="pass --kv-precision int8|pass --kv-precision bf16"):
        predict_llm(q(accs, "llama-3.1-8b", "A100-SXM-80GB", 1, "bf16", kv_precision="fp8"), eff)
