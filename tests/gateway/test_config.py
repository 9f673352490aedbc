"""Gateway configuration: the shipped example, plan JSON, and errors that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.errors import GatewayError
from flopex.gateway import load_gateway_config, resolve_backends
from flopex.perf import load_efficiency
from flopex.plan import load_plan, make_plan

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def test_the_example_resolves_prices_power_and_jurisdictions_from_the_catalog() -> None:
    config = load_gateway_config(ROOT / "examples" / "gateway.yaml")
    specs = {s.id: s for s in resolve_backends(config, CATALOG, EFF, ENERGY)["llama-3.1-8b"]}
    h100 = CATALOG.offer("nebius/eu-north1/gpu-h100-sxm_1gpu-16vcpu-200gb/on_demand")
    assert h100 is not None and specs["h100"].usd_per_hour == h100.price_usd_per_hour
    assert specs["h100"].tokens_per_s > specs["l4"].tokens_per_s > 0
    assert specs["h100"].power_w > specs["l4"].power_w > 0
    assert "EU" in specs["h100"].jurisdictions and specs["h100"].grid_gco2e_per_kwh is not None


def test_a_plan_json_loads_as_the_backend_set(tmp_path: Path) -> None:
    spec, workloads = load_plan(ROOT / "examples" / "enterprise-chat-70b.yaml")
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY).to_json()
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    offers = {line["offer"] for line in plan["fleet"] if line["groups"]}
    endpoints = "".join(f"  {o}: http://127.0.0.1:9/v1\n" for o in offers)
    (tmp_path / "gw.yaml").write_text(f"plan: plan.json\nendpoints:\n{endpoints}")
    config = load_gateway_config(tmp_path / "gw.yaml")
    backends = resolve_backends(config, CATALOG, EFF, ENERGY)
    assert set(backends) == {"llama-3.3-70b"}
    assert {s.id for s in backends["llama-3.3-70b"]} == {line["candidate"] for line in plan["fleet"] if line["groups"]}
    (tmp_path / "gw.yaml").write_text("plan: plan.json\nendpoints: {}\n")
    with pytest.raises(GatewayError, match="endpoints"):
        load_gateway_config(tmp_path / "gw.yaml")


BACKEND = "models: {{m: {{backends: [{{id: a, base_url: 'http://x/v1', {}}}]}}}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modles: {}\n", "Did you mean 'models'"),
        ("models: {m: {backends: [{id: a, base_url: 'http://x/v1'}]}}\n", "give `offer:`"),
        (BACKEND.format("offer: aws/nowhere/x/on_demand"), "not in the catalog"),
        (BACKEND.format("usd_per_hour: 1, tokens_per_s: 10, api_key_env: NOPE_KEY"), "NOPE_KEY is not set"),
        ("models: {}\n", "no models"),
    ],
)  # fmt: skip
def test_bad_configs_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(GatewayError, match=message):
        config = load_gateway_config(path)
        resolve_backends(config, CATALOG, EFF, ENERGY, env={})
