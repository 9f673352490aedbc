"""The emulated backend runs the simulator's engine on a real clock, driven by the official openai client."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

from flopex.perf import Batch

from .conftest import MODEL, emulator, http, replica


def _ttft(client: openai.OpenAI, prompt_chars: int, max_tokens: int = 4) -> float:
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x" * prompt_chars}], max_tokens=max_tokens, stream=True
    )
    first = 0.0
    for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
    return first


def test_a_long_prompt_takes_its_prefill_time_and_a_short_one_does_not(client_for: Any) -> None:
    scale = 0.5
    rep = replica("L4")
    with emulator("L4", time_scale=scale) as server:
        client = client_for(server)
        _ttft(client, 40)  # the first request opens the connection
        short = _ttft(client, 40)
        long = _ttft(client, 4 * 8000)
    # a lone 8,000-token prompt is one step of 8,000 prefill tokens (the budget is 8,192), plus the overhead
    tokens = 8000 + 8  # the JSON around the message counts too, four characters a token
    expected = rep.step(Batch(0, 0.0, tokens, tokens * tokens / 2, 1)).total_s + rep.engine.request_overhead_s
    assert long == pytest.approx(expected * scale, rel=0.15)
    assert short < long / 5


def test_prompts_share_steps_so_a_long_prompt_slows_the_tokens_of_a_running_answer(client_for: Any) -> None:
    rep = replica("L4")
    with emulator("L4", time_scale=1.0) as server:
        client = client_for(server)
        gaps: list[float] = []

        def decode() -> None:
            last = 0.0
            for chunk in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                        max_tokens=60, stream=True):  # fmt: skip
                now = time.perf_counter()
                if chunk.choices and chunk.choices[0].delta.content:
                    if last:
                        gaps.append(now - last)
                    last = now

        reader = threading.Thread(target=decode)
        reader.start()
        time.sleep(0.5)
        _ttft(client, 4 * 7000)  # a long prompt joins while the answer is decoding
        reader.join()
    decode_step = rep.step(Batch(1, 100.0, 0, 0.0, 1)).total_s
    assert max(gaps) > 5 * decode_step  # the token that shared a step with the prompt's prefill
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(decode_step, rel=0.5)


def test_a_client_that_goes_away_frees_its_place_in_the_engine(client_for: Any) -> None:
    with emulator("L4", time_scale=1.0) as server:
        client = client_for(server)
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=5000, stream=True)  # fmt: skip
        next(iter(stream))
        assert http("GET", f"{server.url}/health").json()["running"] == 1
        stream.close()
        deadline = time.monotonic() + 5
        while http("GET", f"{server.url}/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http("GET", f"{server.url}/health").json() == {"running": 0, "waiting": 0, "replicas": 1}


def test_bad_lengths_are_the_clients_mistake(client_for: Any) -> None:
    with emulator("L4") as server:
        url = f"{server.url}/v1/chat/completions"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        assert http("POST", url, {**body, "max_tokens": "abc"}).status == 400
        assert http("POST", url, {**body, "max_tokens": 0}).status == 400
        too_long = http("POST", url, {**body, "max_tokens": 10_000_000})
        assert too_long.status == 400 and "maximum context length is 131,072" in too_long.json()["error"]["message"]
