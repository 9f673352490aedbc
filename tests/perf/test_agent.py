"""Agent sessions: the three ways to keep a context between turns, and what each costs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import AcceleratorTable
from flopex.errors import PerfError
from flopex.models import resolve_model
from flopex.perf import AgentQuery, Efficiency, predict_agent


def _q(accs: AcceleratorTable, turns: float = 30, i: int = 2000, o: int = 300, idle: float = 60,
       **kw: object) -> AgentQuery:  # fmt: skip
    model = resolve_model("llama-3.1-70b")
    return AgentQuery(model, accs.resolve("H100-SXM"), 8, "fp8", turns, i, o, idle, **kw)  # type: ignore[arg-type]


def test_recompute_prefills_the_whole_context_and_hold_only_the_new_tokens(
    eff: Efficiency, accs: AcceleratorTable
) -> None:
    s = predict_agent(_q(accs, initial_tokens=4000), eff)
    hold, recompute = s.costs["hold"], s.costs["recompute"]
    assert hold.prefill_tokens == pytest.approx(30 * 2000)
    # turn k re-reads 4000 + (k-1) x 2300 tokens before its 2000 new ones
    assert recompute.prefill_tokens == pytest.approx(sum(4000 + k * 2300 + 2000 for k in range(30)))
    assert s.final_context == 4000 + 30 * 2300


def test_long_idle_makes_holding_memory_bound_and_offload_cheaper(eff: Efficiency, accs: AcceleratorTable) -> None:
    s = predict_agent(_q(accs, turns=6, idle=300), eff)
    hold, offload = s.costs["hold"], s.costs["offload"]
    assert hold.bound == "memory"
    assert hold.hbm_gb_seconds > offload.hbm_gb_seconds
    assert offload.host_gb_seconds > 0 and offload.pcie_seconds > 0
    assert offload.accelerator_seconds < hold.accelerator_seconds
    assert s.cheapest != "hold"


def test_short_contexts_with_no_idle_favour_holding(eff: Efficiency, accs: AcceleratorTable) -> None:
    s = predict_agent(_q(accs, turns=120, i=200, o=100, idle=0.0), eff)
    assert s.costs["hold"].accelerator_seconds < s.costs["recompute"].accelerator_seconds
    assert s.costs["offload"].pcie_seconds > 0


def test_impossible_sessions_say_what_to_change(eff: Efficiency, accs: AcceleratorTable) -> None:
    with pytest.raises(PerfError, match="at most 59 turns per hour"):
        predict_agent(_q(accs, turns=60, idle=60), eff)
    with pytest.raises(PerfError, match="reads at most 131,072"):
        predict_agent(_q(accs, turns=100, i=2000, idle=1, hours=1.0), eff)


@settings(max_examples=15, deadline=None)
@given(turns=st.integers(2, 40), idle=st.floats(0, 60), more=st.integers(50, 500))
def test_costs_are_positive_and_more_output_never_costs_less_to_recompute(
    eff: Efficiency, accs: AcceleratorTable, turns: int, idle: float, more: int
) -> None:
    # on one layout: a longer answer can move the best layout to another tensor-parallel degree, whose
    # operating batch under the SLO differs, so the invariant holds per deployment
    base = predict_agent(_q(accs, turns=turns, i=500, o=100, idle=idle, tensor_parallel=2), eff)
    for cost in base.costs.values():
        assert cost.accelerator_seconds > 0 and cost.hbm_gb_seconds > 0
    longer = predict_agent(_q(accs, turns=turns, i=500, o=100 + more, idle=idle, tensor_parallel=2), eff)
    assert longer.costs["recompute"].replica_seconds > base.costs["recompute"].replica_seconds
