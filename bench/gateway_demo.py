"""Two emulated backends of Llama 3.1 8B behind the gateway, driven by the official openai client.

A fast H100 rented on demand (nebius, $2.95/h) and a slow L4 the team already owns (priced at $0.20/h, its
power and upkeep; region and grid from the AWS g6.xlarge offer), each an emulator whose timing follows the
performance model in real time. At catalog prices an H100 is the cheaper of the two per token: the owned L4
is what makes cost and latency pull apart. The gateway routes by policy:
- cost: the lowest cost per token at the backend's current load;
- cost within a 120 ms TPOT SLO: the cheapest backend expected to keep TPOT under 120 ms;
- latency: the lowest expected TTFT + 100 x TPOT;
- cost under load: 48 concurrent streams against an L4 that takes 16 at a time.

    python bench/gateway_demo.py
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
from rich.console import Console
from rich.table import Table

from flopex.catalog import load_accelerators, load_catalog
from flopex.economics import load_energy_table
from flopex.gateway import BackgroundServer, GatewayConfig, create_app, create_emulator, resolve_backends
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Scenario, load_efficiency, predict_llm, replica_for

MODEL = "llama-3.1-8b"
OFFERS = {
    "h100": "nebius/eu-north1/gpu-h100-sxm_1gpu-16vcpu-200gb/on_demand",
    "l4": "aws/eu-north-1/g6.xlarge/on_demand",
}


def main() -> None:
    eff = load_efficiency()
    emulators = {}
    for name, acc in (("h100", "H100-SXM"), ("l4", "L4")):
        q = LLMQuery(
            resolve_model(MODEL), load_accelerators().resolve(acc), 1, "fp8", 1000, 200, Scenario("server", 0, 2.0, 0.2)
        )
        emulators[name] = BackgroundServer(
            create_emulator(MODEL, replica_for(predict_llm(q, eff), eff), time_scale=0.1)
        ).start()
    best: dict[str, Any] = {"picker": "best", "combine": "sum"}
    policies: dict[str, dict[str, Any]] = {
        "cost": {**best, "scorers": {"cost": 1.0}},
        "cost within a 120 ms TPOT SLO": {**best, "scorers": {"cost": 1.0}, "slo": {"tpot_s": 0.12}},
        "latency": {**best, "scorers": {"latency": 1.0}},
        "cost, 48 concurrent streams": {**best, "scorers": {"cost": 1.0}},
        "plan shares (the default), 48 concurrent streams": {},
    }
    table = Table(title="Gateway routing by policy (openai client -> flopex gateway -> emulated H100 and L4)")
    for col in ("policy", "requests", "to H100", "to L4", "mean $/request", "mean Wh/request", "mean gCO2e/request"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    try:
        for policy_name, policy in policies.items():
            backends = [
                {
                    "id": name,
                    "base_url": f"{server.url}/v1",
                    "offer": OFFERS[name],
                    "precision": "fp8",
                    "max_concurrency": 16 if name == "l4" else 128,
                    **({"usd_per_hour": 0.2} if name == "l4" else {}),
                }
                for name, server in emulators.items()
            ]
            config = GatewayConfig.model_validate({"models": {MODEL: {"routing": policy, "backends": backends}}})
            specs = resolve_backends(config, load_catalog(), eff, load_energy_table())
            gateway = BackgroundServer(create_app(config, specs, seed=1)).start()
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="demo", max_retries=0)
            concurrent = policy_name.endswith("streams")

            def ask(_: int, client: openai.OpenAI = client, concurrent: bool = concurrent) -> dict[str, Any]:
                if not concurrent:
                    raw = client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8
                    )
                    return dict(json.loads(raw.http_response.text)["flopex"])
                chunks = list(
                    client.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": "Hello"}],
                        max_tokens=8,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                return dict(chunks[-1].model_extra["flopex"])  # type: ignore[index]

            with ThreadPoolExecutor(48 if concurrent else 1) as pool:
                labels = list(pool.map(ask, range(48 if concurrent else 6)))
            gateway.stop()
            n = len(labels)
            to = {name: sum(1 for lab in labels if lab["backend"] == name) for name in OFFERS}
            cost = sum(lab["cost_usd"] for lab in labels) / n
            energy = sum(lab["energy_wh_facility"] or 0 for lab in labels) / n
            carbon = sum(lab["co2e_g_operational"] or 0 for lab in labels) / n
            table.add_row(
                policy_name, str(n), str(to["h100"]), str(to["l4"]), f"${cost:.7f}", f"{energy:.5f}", f"{carbon:.5f}"
            )
    finally:
        for server in emulators.values():
            server.stop()
    console = Console(width=150)
    console.print(table)
    for name, offer in OFFERS.items():
        console.print(f"{name}: {offer}")


if __name__ == "__main__":
    main()
