"""Quotes on the shipped catalog: consistency of the money, the constraints, the crossover and the units."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopex.catalog import Catalog, load_catalog
from flopex.economics import Quote, load_energy_table, quote
from flopex.perf import load_efficiency
from flopex.workloads import ChatWorkload, Constraints, TokenTraffic, load_workload

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CATALOG: Catalog = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _quote(name: str, **update: object) -> Quote:
    w = load_workload(EXAMPLES / f"{name}.yaml")
    return quote(w.model_copy(update=update), CATALOG, EFF, ENERGY)


@pytest.mark.parametrize(
    "name", ["enterprise-chat-70b", "code-assistant", "video-service", "agent-fleet", "fine-tune-8b"]
)
def test_every_example_has_an_eligible_best_offer(name: str) -> None:
    q = _quote(name)
    assert q.rows and q.rows[0].eligible
    assert all(r.usd_per_unit > 0 and r.usd_per_hour > 0 for r in q.rows)
    # SLO met first, cheapest first; then rows whose SLO is unknown (hosted); then the rest
    met = [r.usd_per_unit for r in q.rows if r.eligible and r.slo_met]
    assert met == sorted(met)
    order = [(not r.eligible, r.slo_met is None) for r in q.rows]
    assert order == sorted(order)
    for r in q.rows:
        if r.footprint is not None:
            assert r.footprint.facility_wh >= r.footprint.it_wh > 0
            assert r.gco2e_per_unit is not None and r.gco2e_per_unit >= 0


def test_chat_money_adds_up() -> None:
    q = _quote("enterprise-chat-70b")
    w = q.workload
    assert isinstance(w, ChatWorkload)
    rate, (mean_in, mean_out) = w.traffic.requests_per_s or 0, w.traffic.mean_lengths()
    for r in (r for r in q.rows if r.source == "offer"):
        out_per_h = rate * mean_out * 3600
        assert r.usd_per_unit == pytest.approx(r.usd_per_hour / out_per_h * 1e6)
        # the input and output prices split the same hourly cost
        assert r.usd_per_mtok_input is not None and r.usd_per_mtok_output is not None
        split = (r.usd_per_mtok_input * rate * mean_in + r.usd_per_mtok_output * rate * mean_out) * 3600 / 1e6
        assert split == pytest.approx(r.usd_per_hour)
        assert 0 < r.load <= 1
        offer = CATALOG.offer(r.offer_id)
        assert offer is not None and r.usd_per_hour == pytest.approx(r.instances * offer.price_usd_per_hour)


def test_the_crossover_is_where_one_group_costs_what_the_api_charges() -> None:
    q = _quote("enterprise-chat-70b")
    c = q.crossover
    assert c is not None and c.requests_per_s is not None
    assert c.requests_per_s * 3600 * c.hosted_usd_per_request == pytest.approx(c.group_usd_per_hour)
    hosted = [r for r in q.rows if r.source == "hosted"]
    assert min(r.detail["usd_per_request"] for r in hosted) == pytest.approx(c.hosted_usd_per_request)


def test_constraints_filter_and_flag() -> None:
    eu = _quote("enterprise-chat-70b", constraints=Constraints(jurisdictions=("EU",)))
    assert eu.rows and all(r.source == "offer" for r in eu.rows)  # hosted APIs name no region
    for r in eu.rows:
        assert r.region is not None and "EU" in CATALOG.regions.jurisdictions(
            CATALOG.regions.resolve(r.provider, r.region)
        )
    tight = _quote(
        "enterprise-chat-70b", constraints=Constraints(max_power_kw=0.1, max_gco2e_per_1k_output_tokens=1e-6)
    )
    assert all(not r.eligible for r in tight.rows)
    assert any("power" in v for r in tight.rows for v in r.violations)
    assert any("carbon" in v for r in tight.rows for v in r.violations)


def test_slo_failures_say_why() -> None:
    from flopex.workloads import TokenSlo

    q = _quote("enterprise-chat-70b", slo=TokenSlo(ttft_p99_s=0.01, tpot_p99_s=0.001))
    failing = [r for r in q.rows if r.source == "offer" and r.slo_met is False]
    assert failing and all("p99" in r.why for r in failing)
    video = _quote(
        "video-service",
        slo=load_workload(EXAMPLES / "video-service.yaml").slo.model_copy(update={"max_seconds_per_video": 1.0}),
    )
    assert all(r.slo_met is False and "s per video" in r.why for r in video.rows)


def test_training_meets_its_deadline_and_costs_its_accelerator_hours() -> None:
    q = _quote("fine-tune-8b")
    for r in q.rows:
        if r.slo_met:
            assert r.detail["wall_days"] <= 3 + 1e-9
        offer = CATALOG.offer(r.offer_id)
        assert offer is not None
        hours = r.detail["wall_days"] * 24
        assert r.usd_per_unit == pytest.approx(r.instances * offer.price_usd_per_hour * hours)


@settings(max_examples=4, deadline=None)
@given(rate=st.floats(0.5, 40), factor=st.floats(1.1, 4))
def test_more_traffic_never_costs_less_per_hour_on_the_same_offer(rate: float, factor: float) -> None:
    base = load_workload(EXAMPLES / "code-assistant.yaml")
    assert isinstance(base, ChatWorkload)

    def hourly(r: float) -> dict[str, float]:
        traffic = TokenTraffic(requests_per_s=r, lengths=base.traffic.lengths)
        q = quote(base.model_copy(update={"traffic": traffic}), CATALOG, EFF, ENERGY)
        return {row.offer_id: row.usd_per_hour for row in q.rows if row.source == "offer"}

    low, high = hourly(rate), hourly(rate * factor)
    for offer, usd in low.items():
        assert high[offer] >= usd - 1e-9, offer
