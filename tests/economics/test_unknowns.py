"""What a quote does not know stays unknown: a hosted API meets an SLO only where its provider publishes what
the SLO limits, and a row carries its region's grid even where the accelerator's power is unknown."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flopex.catalog import Catalog, HostedOffer, load_catalog
from flopex.economics import load_energy_table, quote
from flopex.perf import load_efficiency, predict_hosted
from flopex.workloads import ChatWorkload, load_workload_text

CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _api(provider: str, **figures: Any) -> HostedOffer:
    base = next(h for h in CATALOG.hosted if h.model == "llama-3.1-8b")
    fields = {"output_tokens_per_s_per_user": None, "ttft_s": None, **figures}
    return base.model_copy(update={"id": f"{provider}/llama-3.1-8b", "provider": provider, **fields})


def _chat(slo: str, constraints: str = "") -> ChatWorkload:
    text = (f"name: w\nkind: chat\nmodel: llama-3.1-8b\ntraffic: {{requests_per_s: 5, input_tokens: 500, "
            f"output_tokens: 100}}\nslo: {slo}\n{constraints}")  # fmt: skip
    w = load_workload_text(Path("w.yaml"), text)
    assert isinstance(w, ChatWorkload)
    return w


@pytest.mark.parametrize(
    ("figures", "met", "why"),
    [
        ({"output_tokens_per_s_per_user": 1800}, None, "publishes no time to first token, so the 10 ms TTFT SLO"),
        ({"output_tokens_per_s_per_user": 1800, "ttft_s": 0.2}, False, "published TTFT 200 ms > 10 ms"),
        ({"output_tokens_per_s_per_user": 10, "ttft_s": 0.005}, False, "TPOT 100.0 ms at its published 10"),
        ({"output_tokens_per_s_per_user": 1800, "ttft_s": 0.005}, True, "published TTFT 5 ms within 10 ms"),
    ],
)
def test_a_hosted_row_meets_the_slo_only_on_published_figures(
    figures: dict[str, float], met: bool | None, why: str
) -> None:
    catalog: Catalog = replace(CATALOG, offers=(), hosted=(_api("fast", **figures),))
    (row,) = quote(_chat("{ttft_p99_s: 0.01, tpot_p99_s: 0.05}"), catalog, EFF, ENERGY).rows
    assert row.slo_met is met and why in row.why


def test_a_carbon_limit_on_a_hosted_row_is_unknown_because_the_api_publishes_none() -> None:
    catalog: Catalog = replace(CATALOG, offers=(), hosted=(_api("fast", output_tokens_per_s_per_user=1800),))
    w = _chat("{tpot_p99_s: 0.05}", "constraints: {max_gco2e_per_1k_output_tokens: 5}")
    (row,) = quote(w, catalog, EFF, ENERGY).rows
    assert row.violations == ("carbon unknown (hosted APIs publish none)",) and not row.eligible


def test_a_published_first_token_latency_is_predicted_not_left_null() -> None:
    offers = [h for h in CATALOG.hosted if h.ttft_s is not None]
    h = offers[0]
    p = predict_hosted(offers, h.provider, h.model, 550, 150)
    assert p.ttft_s == h.ttft_s and p.to_json()["ttft_s"] == h.ttft_s and p.to_json()["ttft_source"]
    silent = next(o for o in CATALOG.hosted if o.ttft_s is None and o.output_tokens_per_s_per_user is not None)
    assert predict_hosted(CATALOG.hosted, silent.provider, silent.model, 550, 150).to_json()["ttft_s"] is None


@pytest.mark.parametrize("market", [None, 20.0])
def test_every_offer_row_carries_its_regions_grid_even_where_the_power_is_unknown(market: float | None) -> None:
    w = load_workload_text(
        Path("t.yaml"),
        "name: t\nkind: training\nmodel: llama-3.1-8b\ntraining: {tokens: 2.0e10}\nslo: {deadline_days: 3}\n",
    )
    q = quote(w, CATALOG, EFF, ENERGY, market_gco2e_per_kwh=market)
    dark = [r for r in q.rows if r.footprint is None]
    assert dark, "the shipped catalog sells accelerators without a published TDP (TPU, Trainium)"
    for r in q.rows:
        assert r.grid is not None and r.region is not None
        expected = CATALOG.regions.grid(CATALOG.regions.resolve(r.provider, r.region)).gco2e_per_kwh
        assert r.grid.gco2e_per_kwh == (expected if market is None else market)
        assert r.grid_basis == ("location" if market is None else "market")
        if r.footprint is not None:
            assert r.grid == r.footprint.grid
    grid = dark[0].grid
    assert grid is not None and dark[0].to_json()["grid_gco2e_per_kwh"] == grid.gco2e_per_kwh
