"""What counts against a backend, over real HTTP: a malformed request is refused before routing, so that it never
reaches (or counts against) a backend."""

from __future__ import annotations

import time
from typing import Any

from flopex.gateway import EmulatorFaults
from tests.gateway.conftest import MODEL, Server, emulator, gateway, http, spec

MESSAGES: Any = [{"role": "user", "content": "Say something."}]


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
