"""Two gateway processes' worth of gateways on one real Redis: a backend ejected by one is ejected by the other
at once, and restored in both when one's probe finds it back; with Redis gone each keeps its own health."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import openai

from flopex.gateway import GatewayConfig, create_app, free_port
from flopex.gateway.testing import Behaviour, FakeClock, FakeUpstream
from tests.gateway.conftest import MODEL, Server, http, scored, spec
from tests.ledger.conftest import fresh_redis

HEALTH = {"eject_after_failures": 3, "backoff_s": 10.0, "max_backoff_s": 60.0, "interval_s": 3600.0}


@contextmanager
def replica(redis_url: str) -> Iterator[tuple[Server, FakeUpstream, FakeClock, openai.OpenAI]]:
    upstream, clock = FakeUpstream(), FakeClock()
    cfg = GatewayConfig.model_validate(
        {"models": {MODEL: {"routing": scored(prior=1.0)}}, "health": {**HEALTH, "redis_url": redis_url}}
    )
    specs = [spec("a", "http://a"), spec("b", "http://b")]
    server = Server(create_app(cfg, {MODEL: specs}, seed=1, transport=upstream, clock=clock)).start()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="t", max_retries=0)
    try:
        yield server, upstream, clock, client
    finally:
        client.close()
        server.stop()


def ask(client: openai.OpenAI) -> str:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    return str(raw.headers["x-flopex-backend"])


def view(server: Server) -> dict[str, Any]:
    return dict(http("GET", f"{server.url}/admin/backends").json())


def soon(check: Callable[[], bool], within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def available(server: Server, backend: str) -> bool:
    return bool(next(b for b in view(server)["backends"] if b["id"] == backend)["available"])


def test_an_ejection_anywhere_is_an_ejection_everywhere_and_so_is_a_recovery() -> None:
    url = fresh_redis()
    with ExitStack() as stack:
        (one, up1, clock1, c1), (two, up2, clock2, c2) = (stack.enter_context(replica(url)) for _ in range(2))
        assert soon(lambda: view(one)["health_shared"] and view(two)["health_shared"])
        up1.always("a", Behaviour(refuse=True))
        for _ in range(3):
            assert ask(c1) == "b"
        assert soon(lambda: not available(two, "a")), "the second gateway never heard of the ejection"
        assert [ask(c2) for _ in range(4)] == ["b"] * 4
        assert up2.to("a") == []  # it never tried the ejected backend itself
        up1.always("a", None)
        clock1.advance(10.0)
        assert ask(c1) == "a"  # the first gateway's half-open probe finds a back
        assert soon(lambda: available(two, "a")), "the second gateway never heard of the recovery"
        assert ask(c2) == "a"
    del clock2


def test_a_gateway_started_after_an_ejection_learns_of_it() -> None:
    url = fresh_redis()
    with replica(url) as (one, up1, _, c1):
        up1.always("a", Behaviour(refuse=True))
        for _ in range(3):
            ask(c1)
        assert soon(lambda: not available(one, "a"))
        time.sleep(0.2)  # the ejection is written to Redis
        with replica(url) as (late, up2, _, c2):
            assert soon(lambda: view(late)["health_shared"])
            assert not available(late, "a")
            assert ask(c2) == "b" and up2.to("a") == []


def test_without_redis_each_gateway_keeps_its_own_health_and_says_so() -> None:
    nothing = f"redis://127.0.0.1:{free_port()}/0"
    with replica(nothing) as (one, up1, _, c1), replica(nothing) as (two, _, _, c2):
        up1.always("a", Behaviour(refuse=True))
        for _ in range(3):
            assert ask(c1) == "b"
        assert not available(one, "a")
        assert available(two, "a") and ask(c2) == "a"  # per process: the other never heard
        assert view(one)["health_shared"] is False and view(two)["health_shared"] is False
