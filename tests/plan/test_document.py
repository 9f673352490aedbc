"""The plan document: typed, versioned, valid against its published JSON Schema, and read back unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.errors import PlanError
from flopex.perf import load_efficiency
from flopex.plan import (
    Hosted,
    PlanDocument,
    build_inputs,
    load_plan,
    load_plan_document,
    make_plan,
    plan_document,
    plan_document_schema,
)
from flopex.workloads import ChatWorkload

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()


def _document(factor: float | None) -> PlanDocument:
    """The fleet plan, with a hosted API for the code assistant cheap enough to take its traffic (carbon
    `factor` grams per request, or none)."""
    spec, workloads = load_plan(ROOT / "examples" / "fleet-plan.yaml")
    inputs = build_inputs(workloads, CATALOG, EFF, ENERGY, spec)
    code = next(d for d in inputs.demands if d.workload == "code-assistant")
    n = len(code.rates)
    api = Hosted("groq/llama-3.1-8b", "code-assistant", (1e-6,) * n, None if factor is None else (factor,) * n)
    plan = make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False, inputs=replace(inputs, hosted=[api]))
    return plan_document(plan, CATALOG, EFF)


@pytest.fixture(scope="module")
def document() -> PlanDocument:
    return _document(None)


def test_the_published_schema_is_the_documents_schema() -> None:
    published = json.loads((ROOT / "docs" / "schema" / "plan-document.json").read_text(encoding="utf-8"))
    assert published == plan_document_schema(), "regenerate: flopex plan --schema > docs/schema/plan-document.json"


def test_a_document_is_valid_against_its_schema_and_round_trips(document: PlanDocument, tmp_path: Path) -> None:
    data = json.loads(json.dumps(document.to_json()))
    jsonschema.validate(data, plan_document_schema())
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_plan_document(path) == document


def test_each_deployment_says_what_it_is(document: PlanDocument) -> None:
    kinds = {d.kind for d in document.deployments}
    assert "cloud" in kinds and "hosted_api" in kinds  # the fleet plan sends part of the code assistant to an API
    for d in document.deployments:
        if d.self_hosted:
            offer = CATALOG.offer(d.offer)
            assert offer is not None and d.price.as_of == offer.as_of and d.price.source == offer.source
            assert d.precision in ("bf16", "fp16", "fp8", "int8", "int4", "fp4") and d.layout is not None
            assert d.accelerators_per_group == offer.accelerator_count * (d.instances_per_group or 0)
            assert d.max_sequences_per_replica is not None and d.max_sequences_per_replica > 0
        else:
            assert d.power_kw is None and d.carbon_kg_per_hour is None and d.unknown  # unknown, never 0
    assert document.usd_per_hour == pytest.approx(sum(d.usd_per_hour for d in document.deployments))


def test_unknown_energy_is_null_with_its_reason_not_zero(document: PlanDocument) -> None:
    assert any(d.kind == "hosted_api" for d in document.deployments)
    assert document.energy_kwh_per_hour is None and document.carbon_kg_per_hour is None
    assert document.known_energy_kwh_per_hour > 0
    assert any("publishes no energy" in line for line in document.unknown)


def test_a_hosted_api_with_a_carbon_factor_has_known_carbon_and_unknown_energy() -> None:
    doc = _document(0.5)
    api = next(d for d in doc.deployments if d.kind == "hosted_api")
    requests_per_hour = sum(b.rate * b.shares.get(api.id, 0.0) for b in doc.workload("code-assistant").buckets) * 3600
    assert api.carbon_kg_per_hour == pytest.approx(requests_per_hour * 0.5 / 1000)  # by hand: requests x 0.5 g
    assert api.power_kw is None and doc.energy_kwh_per_hour is None
    known = [d.carbon_kg_per_hour for d in doc.deployments if d.carbon_kg_per_hour is not None]
    assert doc.known_carbon_kg_per_hour == pytest.approx(sum(known))  # the API's factor counts in the known part
    assert (doc.carbon_kg_per_hour is None) == (len(known) < len(doc.deployments))  # null only where one is unknown


def test_routing_shares_name_deployments_and_cover_each_bucket(document: PlanDocument) -> None:
    ids = {d.id for d in document.deployments}
    for w in document.workloads:
        for b in w.buckets:
            assert set(b.shares) <= ids
            assert sum(b.shares.values()) == pytest.approx(1.0)


def test_a_workload_is_read_back_from_the_document(document: PlanDocument) -> None:
    w = document.workloads[0].workload()
    assert isinstance(w, ChatWorkload) and w.name == document.workloads[0].name
    lengths = [b.input_tokens for b in w.traffic.buckets()]
    for i, n in enumerate(lengths):
        assert document.workloads[0].bucket_of(n) == i


def test_an_older_document_is_refused_naming_its_version(document: PlanDocument, tmp_path: Path) -> None:
    old = {**document.to_json(), "plan_schema_version": 1}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    with pytest.raises(PlanError, match=r"version 1; this flopex reads version 2.*flopex plan"):
        load_plan_document(path)


def test_a_broken_document_names_the_field(document: PlanDocument, tmp_path: Path) -> None:
    data = document.to_json()
    data["deployments"][0]["kind"] = "rented"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match=r"broken.json: deployments\.0\.kind"):
        load_plan_document(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(PlanError, match="not a plan document"):
        load_plan_document(path)
