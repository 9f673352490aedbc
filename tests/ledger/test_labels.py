"""Usage records keep each request's label as written; records written under label schema version 1 (before
the gateway metered backend time) read as version 2 beside new ones."""

from __future__ import annotations

import time
from typing import Any

from flopex.economics import BackendMeter, Label, RateCard, request_label
from flopex.ledger import LedgerStore, UsageRecord

V1: dict[str, Any] = {  # what the gateway wrote before version 2
    "label_schema_version": 1, "backend": "h100", "hardware": "1 x H100-SXM (gpu)", "region": "nebius/eu-north1",
    "cost_usd": 2e-6, "energy_wh": 3e-4, "co2e_g": 7e-5, "pue": 1.2, "grid_gco2e_per_kwh": 250.0,
    "prompt_tokens": 9, "completion_tokens": 12, "tokens_counted_by": "upstream usage",
    "basis": "on_demand $2.95/h over 8,800 output tokens/s",
}  # fmt: skip


def _record(rid: str, label: dict[str, Any]) -> UsageRecord:
    return UsageRecord(
        request_id=rid, tenant_id="acme", key_id="k1", model="llama-3.1-8b", backend="h100", offer="test",
        prompt_tokens=label["prompt_tokens"], completion_tokens=label["completion_tokens"],
        cost_usd=label["cost_usd"], energy_wh=None, co2e_g=None, label=label, ttft_s=None, latency_s=0.1,
        status=200, created=time.time(),
    )  # fmt: skip


def test_old_and_new_labels_read_back_as_one_schema(store: LedgerStore) -> None:
    card = RateCard(usd_per_hour=2.95, busy_w=700.0, idle_w=150.0, grid_gco2e_per_kwh=250.0, backend="h100")
    meter = BackendMeter(card, 0.0)
    meter.start("r", 0.0, 10)
    meter.first_token("r", 0.1)
    new = request_label(meter.finish("r", 0.5), card, 9, 12, "upstream usage", generated="2026-11-29T00:00:00+00:00")
    store.write([_record("old", V1), _record("new", new.model_dump(mode="json"))])
    labels = {r["request_id"]: Label.model_validate(r["label"]) for r in store.records("acme")}
    assert labels["new"] == new
    old = labels["old"]
    assert old.label_schema_version == 2 and old.unit == "request" and old.backend == "h100"
    assert (old.cost_usd, old.energy_wh_facility, old.co2e_g_operational) == (2e-6, 3e-4, 7e-5)
    assert old.price_basis == V1["basis"] and "version 1" in old.method
