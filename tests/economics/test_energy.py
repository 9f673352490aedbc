"""Energy and carbon arithmetic, grades, and flopex against published energy measurements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flopex.catalog import AcceleratorTable, GridIntensity, Region, load_accelerators
from flopex.economics import (
    check_energy,
    footprint,
    load_energy_points,
    load_energy_table,
    power_w,
    shipped_energy_points,
)
from flopex.errors import EconomicsError
from flopex.perf import load_efficiency

TABLE = load_energy_table()
ACCS = load_accelerators()
REGION = Region(provider="p", region="r", pue=1.2, pue_source="test")
GRID = GridIntensity(400.0, "test grid", 2024, "region", "")


def test_power_runs_from_idle_to_tdp_plus_the_host_share() -> None:
    h100 = ACCS.resolve("H100-SXM")
    chip, host = power_w(h100, 0.0, TABLE)
    assert chip == 70.0 and host == pytest.approx(0.3 * 700)
    assert power_w(h100, 1.0, TABLE)[0] == 700.0
    assert power_w(h100, 5.0, TABLE)[0] == 700.0  # activity is clipped to 1


@given(a=st.floats(0, 1), b=st.floats(0, 1))
def test_more_activity_never_draws_less_power(a: float, b: float) -> None:
    h100 = ACCS.resolve("H100-SXM")
    lo, hi = sorted((a, b))
    assert power_w(h100, lo, TABLE)[0] <= power_w(h100, hi, TABLE)[0]


def test_footprint_arithmetic() -> None:
    a100 = ACCS.resolve("A100-SXM-80GB")
    fp = footprint(a100, 2.0, 0.5, REGION, GRID, TABLE)
    chip = a100.idle_w + (a100.tdp_w - a100.idle_w) * 0.5  # type: ignore[operator]
    assert fp.accelerator_wh == pytest.approx(2 * chip)
    assert fp.facility_wh == pytest.approx(fp.it_wh * 1.2)
    assert fp.operational_g == pytest.approx(fp.facility_wh / 1000 * 400)
    assert fp.embodied_g == pytest.approx(318_000 * 2 / (4 * 8760))  # Chien et al. per A100, 4 years
    market = footprint(a100, 2.0, 0.5, REGION, GRID, TABLE, market_gco2e_per_kwh=0.0)
    assert market.operational_g == 0 and market.grid_basis == "market"


def test_an_accelerator_without_tdp_is_a_clear_error(accs: AcceleratorTable | None = None) -> None:
    no_tdp = next(a for a in ACCS.values() if a.tdp_w is None)
    with pytest.raises(EconomicsError, match="add tdp_w"):
        power_w(no_tdp, 0.5, TABLE)


@pytest.mark.parametrize(("value", "grade"), [(0.0, "A"), (0.05, "A"), (0.06, "B"), (0.5, "D"), (2.0, "F"), (2.1, "G")])
def test_grade_bands(value: float, grade: str) -> None:
    assert TABLE.grades["1k_output_tokens"].grade(value) == grade


def test_per_token_energy_is_within_a_quarter_of_the_published_measurements() -> None:
    checks = check_energy(load_energy_points(shipped_energy_points()), ACCS, load_efficiency(), TABLE)
    per_token = [c for c in checks if c.metric == "J/output token" and c.point.status == "check"]
    assert len(per_token) == 2
    for c in per_token:
        assert 0.75 <= c.ratio <= 1.25, (c.point.id, c.ratio)
    # a known miss says why it misses, and does miss (else its mark is stale); uncertain rows are reported only
    misses = [c for c in checks if c.point.status == "known miss"]
    assert misses and all(not 0.75 <= c.ratio <= 1.25 for c in misses), [(c.point.id, c.ratio) for c in misses]
    # the InferenceMAX range spans closed loops of several concurrencies; flopex's 4-in-flight point falls
    # inside it. The row at the interactive SLOs is an assumed setting (its `assumed` field): under random
    # arrivals a p99 TTFT of 0.45 s leaves 8k-token prompts a small batch, so it is reported, not asserted.
    ranged = {c.point.id: c for c in checks}
    assert ranged["inferencemax-deepseek-r1-fp8-8k1k-concurrency4"].within_range
    # fewer queries in flight share the same power among fewer queries
    assert (
        ranged["inferencemax-deepseek-r1-fp8-8k1k-concurrency4"].predicted
        > ranged["inferencemax-deepseek-r1-fp8-8k1k"].predicted
    )
