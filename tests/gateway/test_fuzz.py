"""Fuzzing the gateway over real HTTP: schemathesis from its own /openapi.json, and a Hypothesis fuzzer of the
proxied endpoints with arbitrary JSON. No input may get a 500, a crash, or an error outside OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from tests.gateway.conftest import MODEL, Server, emulator, gateway, http, spec


@pytest.fixture(scope="module")
def gw() -> Iterator[Server]:
    with emulator("H100-SXM", time_scale=0.0) as emu, gateway([spec("h100", emu.url)]) as server:
        yield server


def _answered_in_shape(status: int, text: str) -> None:
    assert status != 500, text
    if status >= 400:
        error = json.loads(text)["error"]
        assert {"message", "type", "param", "code"} <= set(error), text


def test_the_gateway_conforms_to_its_own_openapi_description(gw: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the description itself is valid
        operation = result.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call()
            _not_a_server_error(case, response)
            _answered_in_shape(response.status_code, response.text)

        try:
            run()
        except AssertionError as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n".join(failures)


def _not_a_server_error(case: Any, response: Any) -> None:
    """schemathesis's own check, admitting the gateway's 502-504 (an upstream's failure, told as such)."""
    assert response.status_code < 500 or response.status_code in (502, 503, 504), (
        f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(["model", "messages", "prompt", "input", "max_tokens", "max_completion_tokens", "stream",
                          "stream_options", "n", "temperature", "tools", "response_format"])  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(path=st.sampled_from(["chat/completions", "completions", "embeddings"]),
       extra=st.dictionaries(FIELDS, JSON, max_size=5), keep_model=st.booleans())  # fmt: skip
def test_arbitrary_json_never_gets_a_500(gw: Server, path: str, extra: dict[str, Any], keep_model: bool) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "input": "hi",
            "max_tokens": 2, **extra}  # fmt: skip
    if keep_model:
        body["model"] = MODEL
    reply = http("POST", f"{gw.url}/v1/{path}", body)
    _answered_in_shape(reply.status, reply.text)
