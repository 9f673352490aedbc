"""Error bars from the model's out-of-sample record: the shipped bands are what the shipped measurements give
now, and an interval behaves as an interval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flopex.catalog import AcceleratorTable
from flopex.perf import Band, Efficiency, bands_from, cross_validate, load_bands, load_points
from tests.perf.test_calibrate import SHIPPED_POINTS, SHIPPED_VIDEO_TRAINING


def test_the_shipped_bands_are_what_the_shipped_measurements_give(eff: Efficiency, accs: AcceleratorTable) -> None:
    """Rerun `flopex calibrate report --cross-validate --write-bands src/flopex/data/calibration/error-bands.yaml`
    after changing the measurements or the model."""
    results = [cross_validate(load_points(p), eff, accs) for p in (SHIPPED_POINTS, SHIPPED_VIDEO_TRAINING)]
    now, shipped = bands_from(results), load_bands()
    assert set(now.bands) == set(shipped.bands)
    for regime, band in now.bands.items():
        other = shipped[regime]
        assert other is not None and other.rows == band.rows, regime
        assert other.sigma == pytest.approx(band.sigma, abs=1e-4), regime


@given(st.floats(1e-3, 1e6), st.floats(0.01, 1.0), st.integers(1, 50), st.floats(0.5, 0.98), st.floats(0.001, 0.01))
def test_an_interval_holds_its_value_and_widens_with_confidence_and_with_fewer_rows(
    value: float, sigma: float, rows: int, confidence: float, more: float
) -> None:
    low, high = Band("x", sigma, rows).interval(value, confidence)
    assert low < value < high
    wider = Band("x", sigma, rows).interval(value, confidence + more)
    assert wider[0] < low and wider[1] > high
    fewer = Band("x", sigma, max(rows - 1, 1)).interval(value, confidence)
    assert fewer[0] <= low and fewer[1] >= high
