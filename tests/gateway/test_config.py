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
from flopex.plan import load_plan, make_plan, plan_document

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
    h100_w, l4_w = specs["h100"].power_w, specs["l4"].power_w
    assert h100_w is not None and l4_w is not None and h100_w > l4_w > 0
    assert specs["h100"].idle_w is not None and 0 < specs["h100"].idle_w < h100_w  # idle as the planner takes it
    assert "EU" in specs["h100"].jurisdictions and specs["h100"].grid_gco2e_per_kwh is not None


def test_a_plan_document_loads_as_the_backend_set(tmp_path: Path) -> None:
    spec, workloads = load_plan(ROOT / "examples" / "enterprise-chat-70b.yaml")
    doc = plan_document(make_plan(spec, workloads, CATALOG, EFF, ENERGY), CATALOG, EFF)
    (tmp_path / "plan.json").write_text(json.dumps(doc.to_json()))
    endpoints = "".join(f"  {d.id!r}: http://127.0.0.1:9/v1\n" for d in doc.deployments)
    (tmp_path / "gw.yaml").write_text(f"plan: plan.json\nendpoints:\n{endpoints}")
    config = load_gateway_config(tmp_path / "gw.yaml")
    backends = resolve_backends(config, CATALOG, EFF, ENERGY)
    assert set(backends) == {"llama-3.3-70b"}
    by_id = {s.id: s for s in backends["llama-3.3-70b"]}
    assert set(by_id) == {d.id for d in doc.deployments}
    workload = doc.workloads[0]
    for d in doc.deployments:  # each backend carries its deployment's planned share of every bucket, and its cost
        assert by_id[d.id].shares == tuple(b.shares.get(d.id, 0.0) for b in workload.buckets)
        assert by_id[d.id].usd_per_hour == pytest.approx(d.usd_per_hour)
    route = config.models["llama-3.3-70b"]
    assert route.buckets == tuple(b.input_tokens for b in workload.buckets)
    (tmp_path / "gw.yaml").write_text("plan: plan.json\nendpoints: {}\n")
    with pytest.raises(GatewayError, match="has no entry in `endpoints:`"):
        load_gateway_config(tmp_path / "gw.yaml")
    old = {**doc.to_json(), "plan_schema_version": 1}
    (tmp_path / "plan.json").write_text(json.dumps(old))
    (tmp_path / "gw.yaml").write_text(f"plan: plan.json\nendpoints:\n{endpoints}")
    with pytest.raises(GatewayError, match="version 1; this flopex reads version 2"):
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


def test_an_accelerator_without_published_power_has_unknown_power_not_zero(tmp_path: Path) -> None:
    tpu = next(o for o in CATALOG.offers if CATALOG.accelerators[o.accelerator].tdp_w is None)
    (tmp_path / "gw.yaml").write_text(
        f"models: {{llama-3.1-8b: {{backends: [{{id: tpu, base_url: 'http://x/v1', offer: {tpu.id}}}]}}}}\n"
    )
    (spec,) = resolve_backends(load_gateway_config(tmp_path / "gw.yaml"), CATALOG, EFF, ENERGY)["llama-3.1-8b"]
    assert spec.power_w is None and spec.idle_w is None


def test_a_plan_document_and_endpoints_alone_make_a_gateway(tmp_path: Path) -> None:
    spec, workloads = load_plan(ROOT / "examples" / "enterprise-chat-70b.yaml")
    doc = plan_document(make_plan(spec, workloads, CATALOG, EFF, ENERGY), CATALOG, EFF)
    (tmp_path / "plan.json").write_text(json.dumps(doc.to_json()))
    # by offer id: every deployment on that offer gets the URL (the form `flopex serve --endpoint OFFER=URL` takes)
    endpoints = {d.offer: f"http://127.0.0.1:{9000 + i}/v1" for i, d in enumerate(doc.deployments)}
    config = load_gateway_config(None, plan=tmp_path / "plan.json", endpoints=endpoints)
    backends = resolve_backends(config, CATALOG, EFF, ENERGY)["llama-3.3-70b"]
    assert {b.base_url for b in backends} == {url.rstrip("/") for url in endpoints.values()}
    with pytest.raises(GatewayError, match="no entry in `endpoints:`"):
        load_gateway_config(None, plan=tmp_path / "plan.json", endpoints={})
