"""Every failover branch, driven on purpose: the gateway's own logic (which backend, whose fault, when to retry,
eject, probe and restore) against `flopex.gateway.testing`'s fake upstream and clock, through the official
client over real HTTP. The same paths against real emulated backends are in test_gateway and test_ejection."""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest

from flopex.gateway import GatewayConfig, create_app
from flopex.gateway.testing import Behaviour, FakeClock, FakeUpstream
from tests.gateway.conftest import MODEL, Server, http, scored, spec

HEALTH = {"eject_after_failures": 3, "backoff_s": 10.0, "max_backoff_s": 60.0, "interval_s": 3600.0}


@contextmanager
def fake_gateway(
    ids: tuple[str, ...] = ("a", "b"),
    routing: dict[str, Any] | None = None,
    shares: dict[str, list[float]] | None = None,
    upstream_model: str = MODEL,
    **config: Any,
) -> Iterator[tuple[Server, FakeUpstream, FakeClock, openai.OpenAI]]:  # fmt: skip
    """A gateway over fake backends `ids` (tried in id order unless `routing` says otherwise), its fake
    upstream and clock, and an official client for it."""
    upstream, clock = FakeUpstream(), FakeClock()
    specs = [
        dataclasses.replace(
            spec(i, f"http://{i}"), shares=tuple((shares or {}).get(i, ())), upstream_model=upstream_model
        )
        for i in ids
    ]
    route: dict[str, Any] = {"routing": routing if routing is not None else scored(prior=1.0)}
    if shares:
        route["buckets"] = config.pop("buckets")
    cfg = GatewayConfig.model_validate({"models": {MODEL: route}, "health": HEALTH, **config})
    server = Server(create_app(cfg, {MODEL: specs}, seed=7, transport=upstream, clock=clock)).start()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=30)
    try:
        yield server, upstream, clock, client
    finally:
        client.close()
        server.stop()


def ask(client: openai.OpenAI, text: str = "hello", **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=3, **extra
    )


def books(server: Server) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in http("GET", f"{server.url}/admin/backends").json()["backends"]}


def test_a_5xx_fails_over_and_counts_against_its_backend_once_another_answers() -> None:
    with fake_gateway() as (server, upstream, _, client):
        upstream.script("a", Behaviour(status=500, body=b'{"error": {"message": "engine crashed"}}'))
        raw = ask(client)
        assert raw.headers["x-flopex-backend"] == "b"
        assert raw.parse().usage.completion_tokens == 3
        assert [s.backend for s in upstream.sent] == ["a", "b"]
        assert books(server)["a"]["errors"] == 1 and books(server)["b"]["errors"] == 0


def test_a_5xx_on_every_backend_is_passed_on_and_blames_none() -> None:
    with fake_gateway() as (server, upstream, _, client):
        for b in ("a", "b"):
            upstream.script(b, Behaviour(status=500, body=b'{"error": {"message": "cannot parse max_tokens"}}'))
        with pytest.raises(openai.InternalServerError) as err:
            ask(client)
        assert "cannot parse max_tokens" in str(err.value)
        assert all(b["errors"] == 0 and b["available"] for b in books(server).values())


def test_a_429_goes_to_another_backend_without_blame_and_the_last_retry_after_reaches_the_client() -> None:
    with fake_gateway() as (server, upstream, _, client):
        upstream.script("a", Behaviour(status=429, body=b'{"error": {"message": "slow down"}}'))
        assert ask(client).headers["x-flopex-backend"] == "b"
        for b in ("a", "b"):
            upstream.script(b, Behaviour(status=429, body=b'{"error": {"message": "slow down"}}',
                                         headers={"retry-after": "7"}))  # fmt: skip
        with pytest.raises(openai.RateLimitError) as err:
            ask(client)
        assert err.value.response.headers["retry-after"] == "7"
        assert all(b["errors"] == 0 for b in books(server).values())


def test_a_4xx_is_the_clients_mistake_passed_through_as_it_came_and_never_retried() -> None:
    with fake_gateway() as (server, upstream, _, client):
        body = b'{"error": {"message": "unknown tool type", "type": "invalid_request_error", "code": "bad_tool"}}'
        upstream.script("a", Behaviour(status=422, body=body))
        with pytest.raises(openai.UnprocessableEntityError) as err:
            ask(client)
        assert err.value.code == "bad_tool"
        assert [s.backend for s in upstream.sent] == ["a"]
        assert books(server)["a"]["errors"] == 0


@pytest.mark.parametrize(
    "behaviour",
    [Behaviour(refuse=True), Behaviour(body=b"<html>502 Bad Gateway</html>")],
    ids=["refused", "unreadable"],
)
def test_a_refused_connection_or_an_unreadable_answer_is_the_backends_fault_at_once(behaviour: Behaviour) -> None:
    with fake_gateway() as (server, upstream, _, client):
        upstream.script("a", behaviour)
        upstream.script("b", behaviour)
        with pytest.raises(openai.APIStatusError) as err:
            ask(client)
        assert err.value.status_code == 502
        assert books(server)["a"]["errors"] == 1 and books(server)["b"]["errors"] == 1


def test_a_stream_cut_before_its_first_token_fails_over_unseen() -> None:
    with fake_gateway() as (server, upstream, _, client):
        upstream.script("a", Behaviour(cut_after=0))
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4, stream=True)  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ok " * 4
        assert [s.backend for s in upstream.sent] == ["a", "b"]
        assert books(server)["a"]["errors"] == 1


def test_a_stream_cut_after_its_first_token_ends_with_an_error_event_and_blames_its_backend() -> None:
    with fake_gateway() as (server, upstream, _, client):
        upstream.script("a", Behaviour(cut_after=3))  # two tokens (each a data line and a blank line), then gone
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=8, stream=True)  # fmt: skip
        got: list[str | None] = []
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            for chunk in stream:
                got.extend(c.delta.content for c in chunk.choices)
        assert got == ["ok ", "ok "]
        assert [s.backend for s in upstream.sent] == ["a"]  # the client saw tokens: no silent retry
        assert books(server)["a"]["errors"] == 1


def test_no_first_byte_by_the_deadline_fails_over_and_closes_the_hung_attempt() -> None:
    with fake_gateway(timeouts={"first_byte_s": 0.3}) as (server, upstream, _, client):
        upstream.script("a", Behaviour(hang=True))
        raw = ask(client)
        assert raw.headers["x-flopex-backend"] == "b"
        assert upstream.to("a")[0].closed_early is False  # it never answered: nothing was left to close
        assert books(server)["a"]["errors"] == 1  # another backend answered in time: the hang was a's
        upstream.script("a", Behaviour(first_line_s=5.0))  # headers at once, then nothing
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=2, stream=True)  # fmt: skip
        assert sum(1 for c in stream if c.choices) == 2
        assert upstream.to("a")[1].closed_early  # its connection dropped: the upstream stops work on it
        assert [s.backend for s in upstream.sent][-2:] == ["a", "b"]


def test_an_ejected_backend_waits_out_its_backoff_on_the_clock_then_one_probe_restores_it() -> None:
    with fake_gateway() as (server, upstream, clock, client):
        upstream.always("a", Behaviour(refuse=True))
        for _ in range(3):
            assert ask(client).headers["x-flopex-backend"] == "b"
        assert not books(server)["a"]["available"]
        for _ in range(5):  # ejected: not tried at all, however long the wall clock runs
            assert ask(client).headers["x-flopex-backend"] == "b"
        assert len(upstream.to("a")) == 3
        clock.advance(10.0)  # the backoff has passed: the next request is a's half-open probe, which fails
        assert ask(client).headers["x-flopex-backend"] == "b"
        assert len(upstream.to("a")) == 4
        clock.advance(15.0)  # the backoff doubled to 20 s: not yet
        ask(client)
        assert len(upstream.to("a")) == 4
        upstream.always("a", None)
        clock.advance(5.0)
        assert ask(client).headers["x-flopex-backend"] == "a"  # the probe answered: a is back
        assert books(server)["a"]["available"]
        assert ask(client).headers["x-flopex-backend"] == "a"


def test_the_health_check_runs_on_the_clock_and_ejects_a_backend_whose_models_fail() -> None:
    with fake_gateway(health={**HEALTH, "interval_s": 5.0}) as (server, upstream, clock, client):
        upstream.health("a", Behaviour(status=503))
        for _ in range(3):
            before = sum(1 for s in upstream.sent if s.path == "models")
            clock.advance(5.0)
            while sum(1 for s in upstream.sent if s.path == "models") < before + 2:
                threading.Event().wait(0.005)
        assert not books(server)["a"]["available"] and books(server)["b"]["available"]
        assert ask(client).headers["x-flopex-backend"] == "b"


def test_power_of_two_choices_never_picks_the_busiest_backend() -> None:
    """With three backends, the busiest loses every pair it is drawn in."""
    routing = {"picker": "p2c", "scorers": {"load": 1.0}, "prefer": []}
    with fake_gateway(("a", "b", "c"), routing=routing) as (server, upstream, _, client):
        for b in ("b", "c"):
            http("POST", f"{server.url}/admin/backends/{b}/drain")
        upstream.script("a", Behaviour(wait_s=1.5), Behaviour(wait_s=1.5))
        slow = [threading.Thread(target=ask, args=(client,)) for _ in range(2)]
        for t in slow:
            t.start()
        while len(upstream.to("a")) < 2:
            threading.Event().wait(0.005)
        for b in ("b", "c"):
            http("POST", f"{server.url}/admin/backends/{b}/undrain")
        chosen = collections.Counter(ask(client).headers["x-flopex-backend"] for _ in range(12))
        for t in slow:
            t.join()
    assert set(chosen) == {"b", "c"}, chosen


def test_prefix_affinity_keeps_a_conversation_on_one_backend_and_spreads_conversations() -> None:
    routing = {"picker": "best", "scorers": {"load": 1.0}, "prefix": 10.0, "prefer": []}
    with fake_gateway(("a", "b", "c"), routing=routing) as (_, _, _, client):
        homes = {}
        for n in range(12):
            system = f"You are assistant number {n}. " * 20
            seen = {
                client.chat.completions.with_raw_response.create(
                    model=MODEL, max_tokens=2,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": f"turn {t}"}],
                ).headers["x-flopex-backend"]
                for t in range(3)
            }  # fmt: skip
            assert len(seen) == 1, f"conversation {n} went to {seen}"
            homes[n] = seen.pop()
        assert len(set(homes.values())) == 3


def test_the_plan_prior_sends_each_prompt_bucket_where_the_plan_put_it() -> None:
    shares = {"a": [0.8, 0.0], "b": [0.2, 1.0]}
    with fake_gateway(shares=shares, buckets=[100, 3000], routing={}) as (_, _, _, client):
        short = collections.Counter(ask(client, "hi").headers["x-flopex-backend"] for _ in range(200))
        long = collections.Counter(ask(client, "word " * 2400).headers["x-flopex-backend"] for _ in range(20))
    assert long == {"b": 20}
    assert 0.70 <= short["a"] / 200 <= 0.90, short  # 0.8 planned; binomial sd 0.028


def test_the_clients_bytes_go_upstream_as_they_came_unless_something_in_them_must_change() -> None:
    with fake_gateway(("a",)) as (server, upstream, _, _):
        body = ('{ "messages" : [{"role":"user","content":"naïve 東京 \\u00e9"}],\n "max_tokens": 2,'
                f' "temperature": 1.0e0, "model": "{MODEL}", "x-vendor": {{"k": [1, 2.50]}} }}').encode()  # fmt: skip
        assert http("POST", f"{server.url}/v1/chat/completions", body).status == 200
        assert upstream.to("a")[-1].raw == body
        streamed = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
        assert http("POST", f"{server.url}/v1/chat/completions", streamed.encode()).status == 200
        assert upstream.to("a")[-1].body["stream_options"] == {"include_usage": True}  # the gateway's label needs it
    with fake_gateway(("a",), upstream_model="meta-llama/Llama-3.1-8B-Instruct") as (server, upstream, _, _):
        assert http("POST", f"{server.url}/v1/chat/completions", body).status == 200
        sent = upstream.to("a")[-1]
        assert sent.body["model"] == "meta-llama/Llama-3.1-8B-Instruct"
        assert sent.body["messages"][0]["content"] == "naïve 東京 é" and "東京".encode() in sent.raw
