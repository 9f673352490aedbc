"""One routing configuration, one policy: the simulator and the gateway, given the same plan document, routing
YAML and request sequence, send every request to the same deployment."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.gateway import Pool, load_gateway_config, resolve_backends
from flopex.perf import load_efficiency
from flopex.plan import Layout, PlanDocument, load_plan, make_plan, plan_document
from flopex.sim import Request, SimOptions, replicas_from_document, simulate
from flopex.workloads import ChatWorkload

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
EFF = load_efficiency()
ENERGY = load_energy_table()
SEED = 11


@pytest.fixture(scope="module")
def document() -> PlanDocument:
    """The code assistant's first self-hosted deployment as three one-replica deployments, a, b and c, whose
    planned shares differ from bucket to bucket."""
    spec, workloads = load_plan(ROOT / "examples" / "fleet-plan.yaml")
    doc = plan_document(make_plan(spec, workloads, CATALOG, EFF, ENERGY, explain=False), CATALOG, EFF)
    w = doc.workload("code-assistant")
    base = next(d for d in doc.deployments if d.workload == w.name and d.self_hosted)
    assert base.layout is not None
    one = Layout(tensor_parallel=base.layout.tensor_parallel, pipeline_parallel=base.layout.pipeline_parallel,
                 replicas_per_group=1)  # fmt: skip
    deployments = [base.model_copy(update={"id": x, "groups": 1, "layout": one}) for x in "abc"]
    splits = [(0.6, 0.3, 0.1), (0.2, 0.5, 0.3), (0.34, 0.33, 0.33)]
    buckets = [
        b.model_copy(update={"shares": dict(zip("abc", splits[i % len(splits)], strict=True))})
        for i, b in enumerate(w.buckets)
    ]
    workload = w.model_copy(update={"buckets": buckets})
    return doc.model_copy(update={"deployments": deployments, "workloads": [workload]})


def _requests(doc: PlanDocument) -> list[Request]:
    """120 requests at once, prompts drawn across the workload's buckets (and between them)."""
    w = doc.workloads[0]
    spec = w.workload()
    assert isinstance(spec, ChatWorkload)
    rng = random.Random(5)
    out = []
    for i in range(120):
        tokens = max(1, int(rng.choice([b.input_tokens or 1 for b in w.buckets]) * rng.uniform(0.6, 1.4)))
        out.append(Request(i, 0.0, w.name, w.bucket_of(tokens), tokens, 8))
    return out


@pytest.mark.parametrize(
    "routing",
    [
        "{}",  # the default: the plan's share of the bucket x 1/(1 + load), drawn at random in proportion
        "{scorers: {plan: 1.0, load: 2.0}, combine: sum, picker: best}",
        "{scorers: {load: 1.0}, picker: p2c}",
    ],
)
def test_the_simulator_and_the_gateway_choose_the_same_backends(
    document: PlanDocument, routing: str, tmp_path: Path
) -> None:
    model = document.workloads[0].model
    (tmp_path / "plan.json").write_text(json.dumps(document.to_json()), encoding="utf-8")
    (tmp_path / "gateway.yaml").write_text(
        f"plan: plan.json\nendpoints: {{a: 'http://127.0.0.1:1/v1', b: 'http://127.0.0.1:2/v1', "
        f"c: 'http://127.0.0.1:3/v1'}}\nmodels: {{{model}: {{routing: {routing}}}}}\n",
        encoding="utf-8",
    )
    config = load_gateway_config(tmp_path / "gateway.yaml")
    requests = _requests(document)

    # the gateway: each request bucketed by its prompt length, routed, and held in flight
    pool = Pool.of(model, resolve_backends(config, CATALOG, EFF, ENERGY)[model], config.models[model])
    rng = random.Random(SEED)
    by_gateway = []
    for r in requests:
        route = pool.request(r.input_tokens, 0, None)
        assert route.bucket == r.bucket  # the gateway buckets as the simulator's requests are bucketed
        state = pool.choose(route, set(), rng, 0.0)
        assert state is not None
        state.in_flight += 1
        by_gateway.append(state.spec.id)

    # the simulator: the same requests, arriving together, under the policy the same YAML builds
    replicas = replicas_from_document(document, CATALOG, EFF)
    group = {r.id: r.group for r in replicas}
    policy = {document.workloads[0].name: config.models[model].routing.policy()}
    result = simulate(requests, replicas, SimOptions(seed=SEED, policies=policy, spot_preemptions=False))
    by_sim = [group[c.replica] for c in sorted(result.completed, key=lambda c: c.request.id)]

    assert by_sim == by_gateway
    assert len(set(by_gateway)) == 3  # every deployment got traffic: the comparison means something
