"""Pre-training: FLOPs, MFU, layout, memory and the published totals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import AcceleratorTable
from flopex.errors import DoesNotFitError, PerfError
from flopex.models import resolve_model
from flopex.perf import (
    Efficiency,
    TrainingQuery,
    merge_efficiency,
    min_training_count,
    predict_training,
    training_flops,
)


def _q(accs: AcceleratorTable, model: str = "llama-2-70b", acc: str = "A100-SXM-80GB", count: int = 2048,
       tokens: float = 2e12, **kw: object) -> TrainingQuery:  # fmt: skip
    return TrainingQuery(resolve_model(model), accs.resolve(acc), count, tokens, **kw)  # type: ignore[arg-type]


def test_flops_follow_six_n_d_plus_attention() -> None:
    m = resolve_model("llama-2-7b")
    dense = 6 * m.active_params * 1e9
    attention = 6 * m.num_layers * 4096 * m.hidden_size * 1e9
    assert training_flops(m, 1e9, 4096) == pytest.approx(dense + attention)
    # MoE: active, not total, parameters
    ds = resolve_model("deepseek-v3")
    assert training_flops(ds, 1.0, 1) < 6 * ds.total_params / 10


def test_a_runs_wall_time_and_energy_follow_its_hours(eff: Efficiency, accs: AcceleratorTable) -> None:
    """(How close the hours come to the published ones is tested row by row, fitted, held out and checked, in
    test_calibrate.)"""
    p = predict_training(_q(accs), eff)
    assert p.wall_days == pytest.approx(p.accelerator_hours / 2048 / 24)
    assert not p.network_bound
    assert p.energy_kwh == pytest.approx(p.accelerator_hours * 0.4)  # A100 at its 400 W TDP


def test_llama31_405b_on_16k_h100_is_within_ten_percent(eff: Efficiency, accs: AcceleratorTable) -> None:
    q = _q(accs, "llama-3.1-405b", "H100-SXM", 16384, 15.6e12, sequence_length=8192, global_batch_tokens=16e6)
    p = predict_training(q, eff)
    assert p.accelerator_hours == pytest.approx(30.84e6, rel=0.10)
    assert p.mfu == pytest.approx(0.38, abs=0.005)  # the large-scale MFU
    assert p.tensor_parallel == 8 and p.pipeline_parallel > 1  # stages hide the gradient reduction


def test_fp8_trains_faster_only_where_the_chip_has_fp8(eff: Efficiency, accs: AcceleratorTable) -> None:
    bf16 = predict_training(_q(accs, acc="H100-SXM"), eff)
    fp8 = predict_training(_q(accs, acc="H100-SXM", precision="fp8"), eff)
    assert fp8.accelerator_hours < bf16.accelerator_hours
    with pytest.raises(PerfError, match="--precision bf16"):
        predict_training(_q(accs, precision="fp8"), eff)  # A100 has no FP8 units


def test_too_few_accelerators_is_an_error_naming_the_minimum(eff: Efficiency, accs: AcceleratorTable) -> None:
    q = _q(accs, count=8)
    needed = min_training_count(q, eff)
    assert needed > 8
    with pytest.raises(DoesNotFitError, match=f"--count {needed}"):
        predict_training(q, eff)
    assert predict_training(_q(accs, count=needed), eff).min_count == needed


def test_a_small_batch_needs_more_stages_and_a_slow_network_binds(eff: Efficiency, accs: AcceleratorTable) -> None:
    big = predict_training(_q(accs, "llama-2-70b", count=4096), eff)
    small = predict_training(_q(accs, "llama-2-70b", count=4096, global_batch_tokens=4096 * 128), eff)
    assert small.pipeline_parallel > big.pipeline_parallel
    assert not small.network_bound
    slow = merge_efficiency(eff, {"training": {"scale_out_gb_s": {"value": 0.05, "source": "test"}}}, "test")
    bound = predict_training(_q(accs, "llama-2-70b", count=4096), slow)
    assert bound.network_bound
    assert bound.mfu < bound.table_mfu
    assert bound.accelerator_hours > big.accelerator_hours


@settings(max_examples=40, deadline=None)
@given(count=st.integers(8, 40000), more=st.floats(1.01, 4.0), tokens=st.floats(1e9, 1e13))
def test_more_accelerators_never_lengthen_a_run_and_more_tokens_cost_more(
    eff: Efficiency, accs: AcceleratorTable, count: int, more: float, tokens: float
) -> None:
    base = predict_training(_q(accs, "llama-3.1-8b", "H100-SXM", count, tokens), eff)
    bigger = predict_training(_q(accs, "llama-3.1-8b", "H100-SXM", int(count * more), tokens), eff)
    assert base.accelerator_hours > 0
    assert bigger.wall_days <= base.wall_days * (1 + 1e-9)
    longer = predict_training(_q(accs, "llama-3.1-8b", "H100-SXM", count, tokens * more), eff)
    assert longer.accelerator_hours > base.accelerator_hours
