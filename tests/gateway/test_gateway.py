"""The gateway with the official openai client, over real HTTP, in front of emulated backends."""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from flopex.gateway import EmulatorFaults
from tests.gateway.conftest import MODEL, Server, emulator, gateway, scored, spec

MESSAGES: Any = [{"role": "user", "content": "Say something."}]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_plain_and_streamed_completions_carry_usage_and_a_label(client_for: Any) -> None:
    with emulator("H100-SXM") as h100, gateway([spec("h100", h100.url)]) as gw:
        client = client_for(gw)
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=12)
        answer = raw.parse()
        assert answer.choices[0].message.content.startswith("tok0")
        assert answer.usage is not None and answer.usage.completion_tokens == 12
        body = json.loads(raw.http_response.text)
        label = body["flopex"]
        # alone on a $2/h, 700 W backend: it pays all the time it held it (labels: tests/gateway/test_metering.py)
        assert label["label_schema_version"] == 2 and label["unit"] == "request"
        assert label["backend_s"] == pytest.approx(label["held_s"]) and label["held_s"] > 0
        assert body["usage"]["cost"] == pytest.approx(2.0 / 3600 * label["held_s"])
        assert label["energy_wh_facility"] == pytest.approx(700 * label["held_s"] / 3600)
        assert label["co2e_g_operational"] == pytest.approx(label["energy_wh_facility"] / 1000 * 300)
        assert raw.headers["x-flopex-backend"] == "h100"
        assert float(raw.headers["x-flopex-cost-usd"]) == pytest.approx(body["usage"]["cost"], rel=1e-3)
        assert raw.headers["x-request-id"]
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, stream=True,
                                                     stream_options={"include_usage": True}))  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.count("tok") == 8
        final = chunks[-1]
        assert final.usage is not None and final.usage.completion_tokens == 8
        assert final.model_extra is not None and final.model_extra["flopex"]["backend"] == "h100"
        # without include_usage the client gets no usage chunk (the gateway still meters it)
        plain = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4, stream=True))
        assert all(c.usage is None for c in plain)
        legacy = client.completions.create(model=MODEL, prompt="hello", max_tokens=3)
        assert legacy.usage is not None and legacy.usage.completion_tokens == 3
        emb = client.embeddings.create(model=MODEL, input=["a", "b"])
        assert len(emb.data) == 2
        assert [m.id for m in client.models.list()] == [MODEL]


def test_errors_have_openais_shape_and_status(client_for: Any) -> None:
    with emulator("H100-SXM") as h100, gateway([spec("h100", h100.url)], limits={"max_body_bytes": 2000}) as gw:
        client = client_for(gw)
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="llama-3.1-8c", messages=MESSAGES)
        assert err.value.code == "model_not_found" and "llama-3.1-8b" in str(err.value)
        status, body, _ = _post(f"{gw.url}/v1/chat/completions", b"{not json")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        status, body, _ = _post(
            f"{gw.url}/v1/chat/completions", json.dumps({"model": MODEL, "messages": "x" * 3000}).encode()
        )
        assert status == 413
        with urllib.request.urlopen(f"{gw.url}/metrics") as r:
            assert b"flopex_requests_total" in r.read()
        with urllib.request.urlopen(f"{gw.url}/healthz") as r:
            assert r.status == 200


def test_failover_when_a_backend_dies_mid_run(client_for: Any) -> None:
    by_load = scored(load=1.0)
    with (
        emulator("H100-SXM") as a,
        emulator("H100-SXM") as b,
        gateway([spec("a", a.url), spec("b", b.url)], routing=by_load) as gw,
    ):
        client = client_for(gw)
        results: list[str] = []
        for i in range(40):
            if i == 10:
                a.stop()
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
            results.append(raw.headers["x-flopex-backend"])
        assert len(results) == 40  # nothing failed for the client
        assert set(results[20:]) == {"b"}
        with urllib.request.urlopen(f"{gw.url}/admin/backends") as r:
            states = {s["id"]: s for s in json.loads(r.read())["backends"]}
        assert not states["a"]["available"] and states["a"]["errors"] >= 1


def test_drain_stops_new_requests_and_lets_in_flight_ones_finish(client_for: Any) -> None:
    by_cost = scored(cost=1.0)
    with (
        emulator("H100-SXM", time_scale=3.0) as a,
        emulator("H100-SXM") as b,
        gateway([spec("a", a.url, usd_per_hour=1.0), spec("b", b.url, usd_per_hour=9.0)], routing=by_cost) as gw,
    ):
        client = client_for(gw)
        results: list[int] = []

        def long_answer() -> None:
            usage = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=60).usage
            results.append(usage.completion_tokens if usage else -1)

        slow = threading.Thread(target=long_answer)
        slow.start()
        import time as _t

        _t.sleep(0.3)
        status, body, _ = _post(f"{gw.url}/admin/backends/a/drain", b"")
        assert status == 200 and body["draining"] and body["in_flight"] == 1
        after = [client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                 .headers["x-flopex-backend"] for _ in range(5)]  # fmt: skip
        slow.join()
        assert results == [60]  # the in-flight answer finished on the draining backend
        assert set(after) == {"b"}


def test_ejection_and_recovery(client_for: Any) -> None:
    with emulator("H100-SXM") as good:
        bad = Server(None)  # nothing listens on its port yet
        specs = [spec("bad", bad.url, usd_per_hour=0.5), spec("good", good.url, usd_per_hour=5.0)]
        with gateway(specs, health={"interval_s": 0.2, "backoff_s": 0.3, "eject_after_failures": 2},
                     routing=scored(cost=1.0)) as gw:  # fmt: skip
            client = client_for(gw)
            first = [client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                     .headers["x-flopex-backend"] for _ in range(6)]  # fmt: skip
            assert set(first) == {"good"}  # connection refused is retried on the other backend
            from flopex.gateway import create_emulator
            from tests.gateway.conftest import replica

            bad.app = create_emulator(MODEL, replica("H100-SXM"), time_scale=0.01)
            bad.start()
            import time as _t

            deadline = _t.time() + 10
            seen: set[str] = set()
            while "bad" not in seen and _t.time() < deadline:  # half-open probes let it back in
                _t.sleep(0.2)
                seen.add(client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                         .headers["x-flopex-backend"])  # fmt: skip
            bad.stop()
            assert "bad" in seen


def test_cost_aware_routing_prefers_the_cheap_backend_until_the_slo_would_be_missed(client_for: Any) -> None:
    with emulator("H100-SXM") as fast, emulator("L4") as slow:
        cheap = spec("l4", slow.url, usd_per_hour=0.8, tokens_per_s=1000, ttft=0.4, tpot=0.06)
        dear = spec("h100", fast.url, usd_per_hour=3.0, tokens_per_s=3000, ttft=0.05, tpot=0.01)
        with gateway([cheap, dear], routing=scored(cost=1.0)) as gw:
            client = client_for(gw)
            chosen = {client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                      .headers["x-flopex-backend"] for _ in range(5)}  # fmt: skip
            assert chosen == {"l4"}  # cheaper per token ($0.8/h over 1,000 tokens/s against $3/h over 3,000)
        with gateway([cheap, dear], routing=scored(cost=1.0, slo={"tpot_s": 0.03})) as gw:
            client = client_for(gw)
            chosen = {client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=2)
                      .headers["x-flopex-backend"] for _ in range(5)}  # fmt: skip
            assert chosen == {"h100"}  # the L4's 60 ms TPOT would miss a 30 ms SLO


def test_under_load_nothing_is_lost_but_streams_that_broke_after_the_first_byte(client_for: Any) -> None:
    dropping = EmulatorFaults(drop_rate=0.3)
    with emulator("H100-SXM", faults=dropping) as a, emulator("H100-SXM") as b, \
            gateway([spec("a", a.url), spec("b", b.url)], routing=scored(load=1.0)) as gw:  # fmt: skip
        client = client_for(gw)

        def one(i: int) -> str:
            try:
                if i % 2:
                    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
                    return "ok" if answer.choices[0].message.content else "empty"
                text = ""
                for c in client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, stream=True):
                    text += (c.choices[0].delta.content or "") if c.choices else ""
                return "ok" if text.count("tok") == 6 else "broken-stream"
            except openai.APIError:
                return "stream-error"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(120)))
        plain = outcomes[1::2]
        streamed = outcomes[0::2]
        assert plain.count("ok") == len(plain)  # non-streamed answers fail over: none lost
        failed_streams = len(streamed) - streamed.count("ok")
        with urllib.request.urlopen(f"{gw.url}/metrics") as r:
            text = r.read().decode()
        counted = sum(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith("flopex_stream_errors_total{")
        )
        assert failed_streams > 0 and counted == failed_streams  # every lost stream is counted
