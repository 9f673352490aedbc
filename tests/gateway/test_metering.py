"""The gateway's labels and each backend's books, over real HTTP with the openai client in front of emulated
backends: a long prompt costs more than a short one, embeddings pay their input price, and the labels plus the
backends' idle cost are what the backends cost over the window (energy likewise)."""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import openai
import pytest

from flopex.gateway import BackendSpec
from tests.gateway.conftest import MODEL, Server, emulator, gateway, http, scored, spec

SHORT = [{"role": "user", "content": "hi"}]  # about 10 tokens (four characters of the JSON a token)
LONG = [{"role": "user", "content": "word " * 7_990}]  # about 10,000 tokens


def _backend(backend_id: str, url: str, usd_per_hour: float, busy_w: float, idle_w: float) -> BackendSpec:
    return replace(spec(backend_id, url, usd_per_hour=usd_per_hour), power_w=busy_w, idle_w=idle_w)


def _label(client: openai.OpenAI, messages: Any, max_tokens: int, stream: bool) -> dict[str, Any]:
    """One chat completion; its flopex label (from the body, or from the final usage chunk of a stream)."""
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=max_tokens)
        return dict(json.loads(raw.http_response.text)["flopex"])
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens, stream=True,
                                                 stream_options={"include_usage": True}))  # fmt: skip
    extra = chunks[-1].model_extra
    assert extra is not None
    return dict(extra["flopex"])


def _books(server: Server) -> dict[str, dict[str, Any]]:
    reply = http("GET", f"{server.url}/admin/backends")
    assert reply.status == 200
    return {b["id"]: b["books"] for b in reply.json()["backends"]}


def test_a_10000_token_prompt_costs_more_than_a_10_token_prompt_with_the_same_answer(client_for: Any) -> None:
    with emulator("H100-SXM", time_scale=1.0) as h100, gateway([_backend("h100", h100.url, 2.95, 700, 150)]) as gw:
        client = client_for(gw)
        for stream in (True, False):
            short = _label(client, SHORT, 16, stream)
            long = _label(client, LONG, 16, stream)
            print(json.dumps({"short": short, "long": long}, indent=1))
            assert short["completion_tokens"] == long["completion_tokens"] == 16
            assert long["prompt_tokens"] > 900 * short["prompt_tokens"]
            assert long["cost_usd"] > short["cost_usd"] > 0
            assert long["energy_wh_facility"] > short["energy_wh_facility"] > 0
            # alone on the backend, each pays all the time it held it
            for lab in (short, long):
                assert lab["backend_s"] == pytest.approx(lab["held_s"])
                assert lab["cost_usd"] == pytest.approx(2.95 / 3600 * lab["held_s"])
                assert lab["includes_idle"] is False and lab["unit"] == "request"
            basis = "first token came" if stream else "moving-average TTFT, since the answer was not streamed"
            assert basis in long["share_basis"]
        # together: while both prefill, the long prompt does 1,000 times the work per step
        with ThreadPoolExecutor(2) as pool:
            long_f = pool.submit(_label, client, LONG, 16, True)
            short_f = pool.submit(_label, client, SHORT, 16, True)
            long, short = long_f.result(), short_f.result()
        assert long["cost_usd"] > short["cost_usd"]


def test_embeddings_on_a_hosted_api_pay_the_input_price_and_know_no_energy(client_for: Any) -> None:
    with emulator("H100-SXM") as emu, gateway([spec("api", emu.url, hosted=True)]) as gw:
        raw = client_for(gw).embeddings.with_raw_response.create(model=MODEL, input=["a" * 400, "b" * 400])
        label = json.loads(raw.http_response.text)["flopex"]
        assert label["prompt_tokens"] == 200 and label["completion_tokens"] == 0
        assert label["cost_usd"] == pytest.approx(200 * 0.1 / 1e6)  # the input price, $0.1 per 1M tokens
        assert float(raw.headers["x-flopex-cost-usd"]) == pytest.approx(label["cost_usd"], rel=1e-5)
        assert label["energy_wh_facility"] is None and label["energy_unknown"] == "the provider publishes no energy"
        assert label["co2e_g_operational"] is None and label["co2e_unknown"]
        assert "x-flopex-energy-wh" not in raw.headers


def test_metrics_and_the_admin_view_report_each_backends_idle_cost(client_for: Any) -> None:
    with emulator("H100-SXM") as emu, gateway([_backend("h100", emu.url, 3.6, 1000, 200)]) as gw:
        client_for(gw).chat.completions.create(model=MODEL, messages=SHORT, max_tokens=4)
        time.sleep(0.2)
        books = _books(gw)["h100"]
        assert books["requests"] == 1 and books["in_flight"] == 0 and books["unbilled_usd"] == 0
        assert books["idle_usd"] > 0 and books["idle_power_basis"] == "the backend's idle facility power"
        assert books["labelled_usd"] + books["idle_usd"] == pytest.approx(books["backend_usd"], rel=1e-9)
        assert books["backend_usd"] == pytest.approx(3.6 / 3600 * books["window_s"])
        text = http("GET", f"{gw.url}/metrics").text
        for name in ("cost_usd", "idle_usd", "labelled_usd", "energy_wh", "idle_energy_wh"):
            assert f'flopex_backend_{name}_total{{backend="h100"}}' in text


def test_a_failed_attempt_is_booked_unbilled_and_the_books_still_balance(client_for: Any) -> None:
    with emulator("H100-SXM") as good, gateway([spec("good", good.url), spec("dead", "http://127.0.0.1:9")],
                                                routing=scored(cost=1.0)) as gw:  # fmt: skip
        client = client_for(gw)
        for _ in range(4):
            client.chat.completions.create(model=MODEL, messages=SHORT, max_tokens=4)
        books = _books(gw)
        assert books["dead"]["labelled_usd"] == 0 and books["dead"]["requests"] >= 1
        for b in books.values():
            total = b["labelled_usd"] + b["unbilled_usd"] + b["idle_usd"] + b["in_flight_usd"]
            assert total == pytest.approx(b["backend_usd"], rel=1e-9)


# --- the show: conservation over emulated traffic -----------------------------------------------------------

SECONDS = float(os.environ.get("FLOPEX_METERING_SECONDS", "30"))


def _drive(gw: Server, seconds: float, seed: int) -> list[dict[str, Any]]:
    """Mixed traffic from one client for `seconds`: short and long prompts, streamed and not."""
    rng = random.Random(seed)
    labels = []
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="test", max_retries=0, timeout=60) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            messages = LONG if rng.random() < 0.3 else SHORT
            labels.append(_label(client, messages, rng.choice((8, 32, 128)), rng.random() < 0.5))
            time.sleep(rng.expovariate(2.0))  # gaps, so that the backends are sometimes idle
    return labels


def test_labels_plus_idle_are_what_the_backends_cost_over_the_window() -> None:
    """Two emulated backends in real time behind a real gateway, six clients for SECONDS seconds. For each
    backend: the labels the clients received + its idle cost = its $/h x the window, within 1% (by
    construction it is exact); and the labels' energy + idle energy = busy power x busy time + idle power x
    idle time."""
    began = time.perf_counter()
    figures = {"h100": (2.95, 700.0, 150.0), "l4": (0.85, 95.0, 25.0)}
    with (
        emulator("H100-SXM", time_scale=1.0) as h100,
        emulator("L4", time_scale=1.0) as l4,
        gateway(
            [_backend("h100", h100.url, *figures["h100"]), _backend("l4", l4.url, *figures["l4"])],
            routing=scored(load=1.0),
        ) as gw,  # fmt: skip
    ):
        with ThreadPoolExecutor(6) as pool:
            runs = [pool.submit(_drive, gw, SECONDS, seed) for seed in range(6)]
            labels = [lab for run in runs for lab in run.result()]
        time.sleep(0.5)
        books = _books(gw)
    elapsed = time.perf_counter() - began
    report = {}
    for bid, (usd_per_hour, busy_w, idle_w) in figures.items():
        b = books[bid]
        mine = [lab for lab in labels if lab["backend"] == bid]
        cost = sum(lab["cost_usd"] for lab in mine)
        energy = sum(lab["energy_wh_facility"] for lab in mine)
        assert mine and b["in_flight"] == 0 and b["unbilled_usd"] == 0
        assert 0 < b["window_s"] <= elapsed and b["busy_s"] + b["idle_s"] == pytest.approx(b["window_s"])
        assert cost + b["idle_usd"] == pytest.approx(usd_per_hour / 3600 * b["window_s"], rel=0.01)
        power = (busy_w * b["busy_s"] + idle_w * b["idle_s"]) / 3600
        assert energy + b["idle_wh"] == pytest.approx(power, rel=0.01)
        assert all(lab["cost_usd"] > 0 for lab in mine)
        report[bid] = {
            "requests": len(mine), "window_s": b["window_s"], "busy_s": b["busy_s"],
            "labels_usd": cost, "idle_usd": b["idle_usd"], "backend_usd": usd_per_hour / 3600 * b["window_s"],
            "usd_gap": cost + b["idle_usd"] - usd_per_hour / 3600 * b["window_s"],
            "labels_wh": energy, "idle_wh": b["idle_wh"], "backend_wh": power,
            "wh_gap": energy + b["idle_wh"] - power,
        }  # fmt: skip
    print(json.dumps(report, indent=1))
    long = [lab for lab in labels if lab["prompt_tokens"] > 5000]
    short = [lab for lab in labels if lab["prompt_tokens"] < 100]
    assert long and short
