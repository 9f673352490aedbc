"""What counts against a backend, over real HTTP: a client that leaves never does (it is billed for what it used,
recorded as 499, and its upstream stops); a malformed request is refused before routing; one request that fails on
every backend ejects none; a hung backend is failed over in seconds and comes back soon after it recovers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from flopex.gateway import EmulatorFaults, GatewayConfig, Tenancy, create_app, create_emulator
from flopex.ledger import LedgerStore, build_ledger
from tests.gateway.conftest import MODEL, Server, emulator, gateway, http, replica, scored, spec

MESSAGES: Any = [{"role": "user", "content": "Say something."}]
ADMIN = "admin-token"


def _backends(gw: Server, admin: str | None = None) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in http("GET", f"{gw.url}/admin/backends", token=admin).json()["backends"]}


def _settled(gw: Server, admin: str | None = None, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The backends once nothing is in flight on any."""
    deadline = time.monotonic() + timeout
    backends = _backends(gw, admin)
    while any(b["in_flight"] for b in backends.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
        backends = _backends(gw, admin)
    return backends


def _answered(gw: Server, status: str) -> float:
    """Requests the gateway counted with this status, on /metrics."""
    with urllib.request.urlopen(f"{gw.url}/metrics") as r:
        lines = r.read().decode().splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith("flopex_requests_total{") and f'"{status}"' in x)


def _busy(emu: Server) -> int:
    """Sequences the emulated engine is prefilling, decoding or queueing."""
    with urllib.request.urlopen(f"{emu.url}/health") as r:
        state = json.loads(r.read())
    return int(state["running"] + state["waiting"])


def _freed_after(emu: Server, timeout: float = 10.0) -> float:
    """Seconds until the emulated engine holds no sequence."""
    start = time.monotonic()
    while _busy(emu) and time.monotonic() - start < timeout:
        time.sleep(0.02)
    return time.monotonic() - start


def _open_stream(gw: Server, token: str, max_tokens: int) -> socket.socket:
    """A streamed request sent on a raw socket, nothing of it read (so it can be dropped at any moment)."""
    body = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "stream": True}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(head.encode() + body)
    return sock


@contextmanager
def _tenant_gateway(url: str, tmp_path: Path, **config: Any) -> Iterator[tuple[Server, LedgerStore]]:
    parts = build_ledger(f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "journal", None, write_interval_s=0.01)
    cfg = GatewayConfig.model_validate({"models": {MODEL: {}}, **config})
    slow = spec("a", url, ttft=3.0, tpot=0.3)  # its speeds as slowed, so that a reservation covers a request
    server = Server(create_app(cfg, {MODEL: [slow]}, seed=1, tenancy=Tenancy(parts), admin_token=ADMIN))
    server.start()
    try:
        yield server, parts.store
    finally:
        server.stop()


def _records(store: LedgerStore, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(records := store.records("acme")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(records, key=lambda r: r["created"])


# --- 1. a client that leaves ---------------------------------------------------------------------------------
def test_clients_that_leave_their_streams_never_eject_the_backend(client_for: Any) -> None:
    with emulator("H100-SXM", time_scale=1.0) as a, gateway([spec("a", a.url)]) as gw:
        client = client_for(gw)
        for _ in range(5):  # three failures in a row would eject it
            stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=200, stream=True)
            next(iter(stream))  # the first token, then the client goes
            stream.close()
            _settled(gw)
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        assert answer.usage is not None and answer.usage.completion_tokens == 2
        backend = _settled(gw)["a"]
        assert backend["available"] and backend["errors"] == 0
        assert _answered(gw, "499") == 5 and _answered(gw, "502") == 0


def test_a_client_that_leaves_stops_its_upstream_and_pays_for_what_it_used(tmp_path: Path) -> None:
    """The emulated engine is slowed a hundredfold: its first token comes after about two seconds, then one
    every quarter of a second or so."""
    with emulator("H100-SXM", faults=EmulatorFaults(slow=100), time_scale=1.0) as a, \
            _tenant_gateway(a.url, tmp_path) as (gw, store):  # fmt: skip
        _, token = store.create_key("acme")
        sock = _open_stream(gw, token, max_tokens=50)
        time.sleep(0.4)
        assert _busy(a) == 1  # the engine has it, no token yet
        sock.close()  # before the first token
        assert _freed_after(a) < 1.0  # the gateway closed the upstream request; it did not wait for a token
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=token, max_retries=0, timeout=30) as client:
            stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=50, stream=True)
            chunks = iter(stream)
            for _ in range(3):
                next(chunks)
            stream.close()  # after three tokens of fifty
        assert _freed_after(a) < 1.0
        before, after = _records(store, 2)
        for record in (before, after):
            assert record["status"] == 499 and record["backend"] == "a"
            assert record["prompt_tokens"] >= 5  # the gateway's estimate: the upstream sent no usage
            assert record["cost_usd"] > 0  # the backend time it held, billed to the client
            assert "left" in record["label"]["tokens_counted_by"]
        assert before["completion_tokens"] == 0
        assert 3 <= after["completion_tokens"] < 20
        backend = _settled(gw, ADMIN)["a"]
        assert backend["errors"] == 0 and backend["available"]
        assert backend["books"]["unbilled_usd"] == 0  # all it took is on the client's labels


# --- 2. the client's fault or the backend's --------------------------------------------------------------------
BAD_FIELDS: list[tuple[str, Any]] = [
    ("max_tokens", "abc"), ("max_tokens", 0), ("max_completion_tokens", 1.5), ("n", "two"), ("temperature", "hot"),
    ("temperature", 3), ("top_p", True), ("messages", "hi"), ("messages", []), ("stop", 7), ("stream_options", "yes"),
]  # fmt: skip


def test_malformed_requests_are_refused_before_routing_and_eject_nothing(client_for: Any) -> None:
    answers_500 = EmulatorFaults(bad_request_status=500)  # as some servers answer what they cannot read
    with emulator("H100-SXM", faults=answers_500) as a, emulator("H100-SXM", faults=answers_500) as b, \
            gateway([spec("a", a.url), spec("b", b.url)]) as gw:  # fmt: skip
        for field, value in BAD_FIELDS * 2:
            body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 4, "stream": field == "stream_options"}
            reply = http("POST", f"{gw.url}/v1/chat/completions", {**body, field: value})
            assert reply.status == 400, (field, value, reply.text)
            error = reply.json()["error"]
            assert error["param"] == field and error["type"] == "invalid_request_error"
            assert f"`{field}`" in error["message"]
        for path, field in (("completions", "prompt"), ("embeddings", "input")):
            reply = http("POST", f"{gw.url}/v1/{path}", {"model": MODEL})
            assert reply.status == 400 and reply.json()["error"]["param"] == field
        client = client_for(gw)
        for _ in range(6):
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2).choices
        backends = _settled(gw)
        assert all(s["available"] and s["errors"] == 0 for s in backends.values())
        assert sum(s["served"] for s in backends.values()) == 6  # only the good ones reached a backend


def test_a_request_that_fails_on_every_backend_ejects_none(client_for: Any) -> None:
    crash = EmulatorFaults(poison="crash-me")  # a well-formed request that every backend answers with a 500
    with emulator("H100-SXM", faults=crash) as a, emulator("H100-SXM", faults=crash) as b, \
            gateway([spec("a", a.url), spec("b", b.url)]) as gw:  # fmt: skip
        poisoned = {"model": MODEL, "messages": [{"role": "user", "content": "crash-me"}], "max_tokens": 2}
        for _ in range(8):
            reply = http("POST", f"{gw.url}/v1/chat/completions", poisoned)
            assert reply.status == 500  # the upstream's answer, after trying both
        client = client_for(gw)
        for _ in range(6):
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2).choices
        backends = _settled(gw)
        assert all(s["available"] and s["errors"] == 0 for s in backends.values())


def test_a_backend_failing_where_another_answers_is_still_ejected(client_for: Any) -> None:
    with emulator("H100-SXM", faults=EmulatorFaults(error_rate=1.0)) as bad, emulator("H100-SXM") as good, \
            gateway([spec("bad", bad.url, usd_per_hour=0.5), spec("good", good.url, usd_per_hour=5.0)],
                    routing=scored(cost=1.0)) as gw:  # fmt: skip
        client = client_for(gw)
        served = {client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                  .headers["x-flopex-backend"] for _ in range(4)}  # fmt: skip
        assert served == {"good"}
        backends = _settled(gw)
        assert not backends["bad"]["available"] and backends["bad"]["errors"] == 3


# --- 3. a hung backend ---------------------------------------------------------------------------------------
def _closed_loop(gw: Server, clients: int, seconds: float) -> list[tuple[float, str]]:
    """Each client sends request after request (streamed and not, in turn): (seconds, outcome) of each."""
    results: list[tuple[float, str]] = []
    end = time.monotonic() + seconds

    def run(k: int) -> None:
        with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=5) as client:
            i = k
            while time.monotonic() < end:
                i += 1
                start = time.monotonic()
                try:
                    if i % 2:
                        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
                        text = answer.choices[0].message.content or ""
                    else:
                        parts = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4,
                                                               stream=True)  # fmt: skip
                        text = "".join((c.choices[0].delta.content or "") if c.choices else "" for c in parts)
                    outcome = "ok" if text.count("tok") == 4 else f"short: {text!r}"
                except openai.APIError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                results.append((time.monotonic() - start, outcome))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("fault", [EmulatorFaults(hang=True), EmulatorFaults(stall=True)], ids=["hang", "stall"])
def test_a_hung_backend_fails_over_in_seconds_and_comes_back_when_it_recovers(fault: EmulatorFaults) -> None:
    """`hang` never answers; `stall` sends a stream's headers and then nothing (a stuck engine behind a live
    server), and its /models still answers. The hung backend is the cheaper, so it is every request's first
    choice until it is ejected."""
    config: dict[str, Any] = {
        "timeouts": {"first_byte_s": 1.0, "keepalive_after_s": 0.25},
        "health": {"interval_s": 0.5, "max_backoff_s": 2.0},
        "routing": scored(cost=1.0),
    }
    with emulator("H100-SXM", faults=fault) as hung, emulator("H100-SXM") as good, \
            gateway([spec("hung", hung.url, usd_per_hour=0.5), spec("good", good.url, usd_per_hour=5.0)],
                    **config) as gw:  # fmt: skip
        results = _closed_loop(gw, clients=6, seconds=5.0)
        failures = [outcome for _, outcome in results if outcome != "ok"]
        assert not failures, failures[:3]
        slowest = max(seconds for seconds, _ in results)
        assert slowest < 2.5  # the first-byte deadline (1 s past the expected TTFT), then another backend
        assert len(results) > 100
        backends = _settled(gw)
        assert backends["hung"]["errors"] >= 3 and backends["hung"]["served"] == 0  # never let back while hung
        hung.stop()
        hung.app = create_emulator(MODEL, replica("H100-SXM"), time_scale=0.01)
        hung.start()
        recovered = time.monotonic()
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=5)
        while time.monotonic() - recovered < 10:
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
            if raw.headers["x-flopex-backend"] == "hung":
                break
            time.sleep(0.05)
        assert time.monotonic() - recovered < 4.0  # the backoff (at most 2 s) and one half-open probe
