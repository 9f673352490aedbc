"""Real HTTP servers in background threads: emulated backends and the gateway, on free local ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flopex.catalog import load_accelerators
from flopex.gateway import (
    BackendSpec,
    BackgroundServer,
    EmulatorFaults,
    GatewayConfig,
    create_app,
    create_emulator,
    free_port,
)
from flopex.models import resolve_model
from flopex.perf import LLMQuery, Replica, Scenario, load_efficiency, predict_llm, replica_for

MODEL = "llama-3.1-8b"


Server = BackgroundServer


def replica(accelerator: str) -> Replica:
    eff = load_efficiency()
    acc = load_accelerators().resolve(accelerator)
    q = LLMQuery(resolve_model(MODEL), acc, 1, "fp8", 1000, 200, Scenario("server", 0, 2.0, 0.2))
    return replica_for(predict_llm(q, eff), eff)


@contextmanager
def emulator(accelerator: str, faults: EmulatorFaults | None = None, time_scale: float = 0.01,
             max_queue: int = 256) -> Iterator[Server]:  # fmt: skip
    app = create_emulator(MODEL, replica(accelerator), time_scale=time_scale, faults=faults or EmulatorFaults(),
                          max_queue=max_queue)  # fmt: skip
    server = Server(app).start()
    try:
        yield server
    finally:
        server.stop()


def spec(backend_id: str, url: str, *, usd_per_hour: float = 2.0, tokens_per_s: float = 2000.0, ttft: float = 0.05,
         tpot: float = 0.01, hosted: bool = False, jurisdictions: tuple[str, ...] = ("EU",),
         max_concurrency: int = 64) -> BackendSpec:  # fmt: skip
    return BackendSpec(
        id=backend_id, model=MODEL, upstream_model=MODEL, base_url=f"{url}/v1", api_key=None,
        max_concurrency=max_concurrency, weight=1.0, usd_per_hour=0.0 if hosted else usd_per_hour,
        tokens_per_s=tokens_per_s, power_w=700.0, grid_gco2e_per_kwh=300.0, pue=1.2,
        usd_per_mtok_input=0.1 if hosted else None, usd_per_mtok_output=0.3 if hosted else None,
        jurisdictions=frozenset(jurisdictions), hardware="test", region="test/eu", basis="test",
        ttft_s=ttft, tpot_s=tpot,
    )  # fmt: skip


def scored(slo: dict[str, float] | None = None, **weights: float) -> dict[str, Any]:
    """A routing configuration that picks the best weighted sum of these scorers (ties to the lowest id)."""
    return {"picker": "best", "combine": "sum", "scorers": weights, **({"slo": slo} if slo else {})}


@contextmanager
def gateway(specs: list[BackendSpec], **config: Any) -> Iterator[Server]:
    routing = config.pop("routing", {})
    cfg = GatewayConfig.model_validate({"models": {MODEL: {"routing": routing}}, **config})
    server = Server(create_app(cfg, {MODEL: specs}, seed=1)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def client_for() -> Any:
    import openai

    def make(server: Server) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=30)

    return make


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


def http(method: str, url: str, body: Any = None, token: str | None = None, **params: str) -> Reply:
    """One plain HTTP request (a dict body goes as JSON, bytes as they are); errors come back as replies."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    req = urllib.request.Request(url + query, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Reply(r.status, r.read().decode(), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read().decode(), dict(e.headers))


class ServeProcess:
    """`python -m flopex serve --config CONFIG` on a free port, its output appended to `log`; ready once
    /healthz answers (else the log says why)."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flopex", "serve", "--config", str(config), "--port", str(self.port), *args],
                stdout=out, stderr=out, env={**os.environ, "COLUMNS": "200"},
            )  # fmt: skip
        deadline = time.time() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop(signal.SIGKILL)
                raise AssertionError(f"the gateway did not start; its log:\n{log.read_text()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return http("GET", f"{self.url}/healthz").status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
