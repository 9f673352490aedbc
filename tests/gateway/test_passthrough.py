"""What passes through the gateway as it is: the client's headers go upstream, the upstream's rate-limit headers
come back, the body keeps its UTF-8 text, and a jurisdiction no backend serves is a permanent 400."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.gateway.conftest import MODEL, Server, gateway, http, spec

SEEN: list[tuple[dict[str, str], bytes]] = []


async def _completion(request: Request) -> Response:
    """An OpenAI-compatible upstream that records what it was sent and answers with rate-limit headers."""
    body = await request.body()
    SEEN.append((dict(request.headers), body))
    answer = {"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "你好"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}  # fmt: skip
    return JSONResponse(answer, headers={"x-ratelimit-remaining-requests": "41", "openai-processing-ms": "7"})


@pytest.fixture()
def upstream() -> Iterator[Server]:
    SEEN.clear()
    server = Server(Starlette(routes=[Route("/v1/chat/completions", _completion, methods=["POST"])])).start()
    try:
        yield server
    finally:
        server.stop()


def test_headers_go_up_and_rate_limits_come_back_and_text_stays_utf8(upstream: Server, client_for: Any) -> None:
    with gateway([spec("up", upstream.url)]) as gw:
        client = client_for(gw)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "日本語のテキスト"}], max_tokens=4,
            extra_headers={"OpenAI-Organization": "org-1", "OpenAI-Project": "proj-2", "x-team": "search",
                           "x-flopex-jurisdiction": "EU"},
        )  # fmt: skip
        assert raw.headers["x-ratelimit-remaining-requests"] == "41"
        assert raw.headers["openai-processing-ms"] == "7"
        assert raw.parse().choices[0].message.content == "你好"
    headers, body = SEEN[-1]
    assert headers["openai-organization"] == "org-1" and headers["openai-project"] == "proj-2"
    assert headers["x-team"] == "search"
    assert "x-flopex-jurisdiction" not in headers  # flopex's own headers stay with flopex
    assert headers.get("authorization") != "Bearer test"  # the client's key is not the backend's
    assert "日本語のテキスト".encode() in body and b"\\u" not in body  # sent as UTF-8, not inflated into escapes
    assert json.loads(body)["messages"][0]["content"] == "日本語のテキスト"


def test_a_jurisdiction_no_backend_serves_is_a_permanent_400(upstream: Server) -> None:
    with gateway([spec("up", upstream.url, jurisdictions=("EU",))]) as gw:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert http("POST", f"{gw.url}/v1/chat/completions", body).status == 200
        req = urllib.request.Request(
            f"{gw.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"content-type": "application/json", "x-flopex-jurisdiction": "US"},
        )
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("a request no backend may serve was answered")
        except urllib.error.HTTPError as e:
            assert e.code == 400 and "retry-after" not in {k.lower() for k in e.headers}
            error = json.loads(e.read())["error"]
            assert error["code"] == "jurisdiction_unavailable" and "EU" in error["message"]
