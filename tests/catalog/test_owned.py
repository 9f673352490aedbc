from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flopex.catalog import Catalog, OwnedServer, owned_cost


def _server(**changes: object) -> OwnedServer:
    base: dict[str, object] = dict(
        name="n",
        region="r",
        accelerator="H100-SXM",
        accelerator_count=8,
        servers=1,
        purchase_usd=280_000,
        amortisation_years=4,
        power_usd_per_kwh=0.18,
        pue=1.3,
        average_load=0.7,
        ops_overhead_pct=10,
    )
    return OwnedServer.model_validate({**base, **changes})


def test_cost_worked_by_hand(catalog: Catalog) -> None:
    cost = owned_cost(_server(), catalog.accelerators["H100-SXM"])
    capital = 280_000 / (4 * 8760)
    # per chip: idle 70 W + (700 - 70) W x 0.7 = 511 W; 8 chips + host 30% of 8 x 700 W
    kw = (8 * 511 + 0.3 * 8 * 700) / 1000
    energy = kw * 1.3 * 0.18
    assert cost.power_kw == pytest.approx(5.768)
    assert cost.total_usd_per_hour == pytest.approx((capital + energy) * 1.10)


def test_measured_power_overrides_the_estimate(catalog: Catalog) -> None:
    cost = owned_cost(_server(server_power_kw=10.0, ops_overhead_pct=0), catalog.accelerators["H100-SXM"])
    assert cost.energy_usd_per_hour == pytest.approx(10.0 * 1.3 * 0.18)


@given(
    purchase=st.floats(1_000, 5_000_000),
    years=st.floats(0.5, 15),
    price=st.floats(0, 2),
    pue=st.floats(1, 3),
    load=st.floats(0, 1),
    extra=st.floats(0, 1_000_000),
)
def test_cost_is_positive_and_grows_with_every_input(
    catalog: Catalog, purchase: float, years: float, price: float, pue: float, load: float, extra: float
) -> None:
    acc = catalog.accelerators["H100-SXM"]
    base = owned_cost(
        _server(purchase_usd=purchase, amortisation_years=years, power_usd_per_kwh=price, pue=pue, average_load=load),
        acc,
    )
    assert base.total_usd_per_hour > 0
    dearer = owned_cost(
        _server(
            purchase_usd=purchase + extra, amortisation_years=years, power_usd_per_kwh=price, pue=pue, average_load=load
        ),
        acc,
    )
    assert dearer.total_usd_per_hour >= base.total_usd_per_hour
    busier = owned_cost(
        _server(
            purchase_usd=purchase,
            amortisation_years=years,
            power_usd_per_kwh=price,
            pue=pue,
            average_load=min(1.0, load + 0.1),
        ),
        acc,
    )
    assert busier.total_usd_per_hour >= base.total_usd_per_hour


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        _server(pue=0.8)
    with pytest.raises(ValueError):
        _server(purchase_usd=-1)
