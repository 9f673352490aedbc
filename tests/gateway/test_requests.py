"""Whatever a client sends, the gateway answers in OpenAI's error shape, never a 500 or plain text: malformed
JSON (too deep, NaN, lone surrogates), wrong field types, unknown paths and methods, oversized request ids."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flopex.gateway import GatewayConfig, Tenancy, create_app
from flopex.ledger import build_ledger
from tests.gateway.conftest import MODEL, Reply, Server, emulator, gateway, http, spec


@pytest.fixture(scope="module")
def gw() -> Iterator[Server]:
    with emulator("H100-SXM", time_scale=0.0) as emu, gateway([spec("h100", emu.url)]) as server:
        yield server


def _raw(server: Server, body: bytes, path: str = "/v1/chat/completions", **headers: str) -> Reply:
    """A POST of these exact bytes (not re-encoded), with these headers."""
    req = urllib.request.Request(f"{server.url}{path}", data=body, method="POST",
                                 headers={"content-type": "application/json", **headers})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Reply(r.status, r.read().decode(), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.read().decode(), dict(e.headers))


def _openai_error(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply
    assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
    error = json.loads(reply.text)["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    return dict(error)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"model": "m", "temperature": NaN}', "NaN is not a JSON number"),
        (b'{"model": "m", "temperature": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"model": "\\ud800", "messages": []}', "lone UTF-16 surrogate"),
        (b'{"model": "x", "messages": [{"role": "user", "content": "\\udfff"}]}', "lone UTF-16 surrogate"),
        (b"\xff\xfe not utf-8", "not valid JSON"),
    ],
)
def test_malformed_json_is_a_400_that_says_why(gw: Server, body: bytes, why: str) -> None:
    error = _openai_error(_raw(gw, body), 400)
    assert why in error["message"] and error["code"] == "invalid_json"


def test_a_stream_flag_that_is_not_a_boolean_is_refused_not_streamed(gw: Server) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "false"}
    error = _openai_error(http("POST", f"{gw.url}/v1/chat/completions", body), 400)
    assert "`stream` must be true or false" in error["message"]


def test_unknown_paths_and_methods_answer_in_openais_shape(gw: Server) -> None:
    error = _openai_error(http("GET", f"{gw.url}/v1/nothing-here"), 404)
    assert "/v1/chat/completions" in error["message"]
    error = _openai_error(http("GET", f"{gw.url}/v1/chat/completions"), 405)
    assert error["code"] == "method_not_allowed"


def test_one_model_can_be_looked_up(gw: Server) -> None:
    reply = http("GET", f"{gw.url}/v1/models/{MODEL}")
    assert reply.status == 200 and json.loads(reply.text)["id"] == MODEL
    error = _openai_error(http("GET", f"{gw.url}/v1/models/{MODEL}x"), 404)
    assert MODEL in error["message"]  # did you mean


def test_an_error_naming_cjk_text_stays_utf8_and_a_lone_surrogate_never_breaks_a_reply(gw: Server) -> None:
    reply = _raw(gw, json.dumps({"model": "模型", "messages": []}, ensure_ascii=False).encode())
    assert _openai_error(reply, 404)["message"].startswith("The model `模型`")


def test_a_callers_request_id_is_echoed_only_when_it_is_a_short_printable_id(gw: Server) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    assert _raw(gw, body, **{"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    long = "a" * 10_000
    echoed = _raw(gw, body, **{"x-request-id": long}).headers["x-request-id"]
    assert echoed != long and len(echoed) <= 128


def test_with_tenants_on_models_and_metrics_need_a_key(tmp_path: Path) -> None:
    with emulator("H100-SXM", time_scale=0.0) as emu:
        parts = build_ledger(f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "journal", None, write_interval_s=0.01)
        cfg = GatewayConfig.model_validate({"models": {MODEL: {}}})
        app = create_app(cfg, {MODEL: [spec("h100", emu.url)]}, tenancy=Tenancy(parts), admin_token="adm")
        server = Server(app).start()
        try:
            assert _openai_error(http("GET", f"{server.url}/v1/models"), 401)["code"] == "invalid_api_key"
            assert _openai_error(http("GET", f"{server.url}/v1/models/{MODEL}"), 401)["code"] == "invalid_api_key"
            assert _openai_error(http("GET", f"{server.url}/metrics"), 401)["code"] == "unauthorised"
            assert http("GET", f"{server.url}/metrics", token="adm").status == 200
            _, key = parts.store.create_key("acme")
            # no max_tokens is put into an embedding request (its backend, like OpenAI's, refuses the field)
            reply = http("POST", f"{server.url}/v1/embeddings", {"model": MODEL, "input": "hello"}, token=key)
            assert reply.status == 200, reply
        finally:
            server.stop()
