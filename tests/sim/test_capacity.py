"""The planner's capacity of one replica against the capacity the simulator measures with the same engine.

The analytic model (`flopex.perf`, what the planner uses) and the simulator's step-by-step scheduler are two
separate computations of one engine; they must agree for short prompts, long prompts and mixes of both.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flopex.catalog import load_accelerators
from flopex.economics import chat_fit
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for
from flopex.sim import Length, attainment, measured_capacity, unit_arrivals
from flopex.workloads import ChatWorkload, TokenSlo, load_workload

EFF = load_efficiency()
ACCS = load_accelerators()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _single(acc: str, i: int, o: int, slo: TokenSlo, burstiness: float = 1.0) -> tuple[float, float]:
    """(planner's, simulator's) requests/s for one replica of Llama 3.1 8B FP8 on one bucket."""
    e2e = slo.e2e_p99_s or math.inf
    scenario = Scenario("server", 0, slo.ttft_p99_s or math.inf, slo.tpot_p99_s or math.inf, e2e, burstiness)
    p = predict_llm(LLMQuery(resolve_model("llama-3.1-8b"), ACCS.resolve(acc), 1, "fp8", i, o, scenario), EFF)
    assert p.slo_met
    sim = measured_capacity(replica_for(p, EFF), [Length(i, o, 1.0, slo)], guess=p.requests_per_s,
                            burstiness=burstiness)  # fmt: skip
    return p.requests_per_s, sim


@pytest.mark.parametrize(
    ("acc", "i", "o", "slo"),
    [
        ("L4", 207, 126, TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)),  # short prompts, TPOT binds
        ("H100-SXM", 125, 28, TokenSlo(ttft_p99_s=0.15, tpot_p99_s=0.048)),  # many prompts share each step
        ("H100-SXM", 2807, 30, TokenSlo(ttft_p99_s=0.15, tpot_p99_s=0.045)),  # long prompts, TTFT binds
        ("H100-SXM", 5779, 28, TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)),  # prompt steps slow every decoder
        ("L4", 1062, 413, TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)),  # the KV cache holds the batch
    ],
)
def test_one_bucket_capacity_agrees_with_the_simulator(acc: str, i: int, o: int, slo: TokenSlo) -> None:
    planned, simulated = _single(acc, i, o, slo)
    assert simulated == pytest.approx(planned, rel=0.10)


def test_bursty_arrivals_lower_capacity_in_the_model_as_in_the_simulator() -> None:
    slo = TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)
    smooth, _ = _single("L4", 207, 126, slo)
    planned, simulated = _single("L4", 207, 126, slo, burstiness=4.0)
    assert planned < smooth
    assert simulated == pytest.approx(planned, rel=0.10)


@pytest.mark.parametrize(("example", "acc"), [("conv-assistant.yaml", "L4"), ("conv-assistant.yaml", "H100-SXM")])
def test_a_mix_of_buckets_agrees_with_the_simulator(example: str, acc: str) -> None:
    w = load_workload(EXAMPLES / example)
    assert isinstance(w, ChatWorkload)
    w = w.model_copy(update={"traffic": w.traffic.model_copy(update={"burstiness": 1.0})})
    fit = chat_fit(w, ACCS.resolve(acc), 1, 1, "fp8", EFF)
    mix = [Length(b.input_tokens, b.output_tokens, b.weight, w.slo) for b in w.traffic.buckets()]
    simulated = measured_capacity(replica_for(fit.predictions[0], EFF), mix, guess=fit.capacity_rps)
    assert simulated == pytest.approx(fit.capacity_rps, rel=0.10)


def test_attainment_falls_with_load() -> None:
    p = predict_llm(LLMQuery(resolve_model("llama-3.1-8b"), ACCS.resolve("L4"), 1, "fp8", 1000, 200,
                             Scenario("server", 0, 2.0, 0.2)), EFF)  # fmt: skip
    rep = replica_for(p, EFF)
    mix = [Length(1000, 200, 1.0, TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2))]
    arrivals = unit_arrivals(1500, 1.0, 0)
    shares = [attainment(rep, mix, rate, arrivals).share for rate in (0.5, 2.0, 8.0)]
    assert shares[0] >= shares[1] >= shares[2]
    assert shares[0] == 1.0 and shares[2] < 0.5
