"""A gateway whose Redis does not answer: a request that needs a shared budget or rate limit gets a clear 503
and reaches no backend; one that needs neither is served; no backend is blamed either way."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from flopex.gateway import GatewayConfig, Tenancy, create_app, free_port
from flopex.gateway.testing import FakeUpstream
from flopex.ledger import build_ledger
from tests.gateway.conftest import MODEL, Server, http, spec


def test_redis_down_refuses_what_it_must_check_with_503_and_blames_no_backend(tmp_path: Path) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"  # a real client to a real port with no server
    parts = build_ledger(f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "j", nothing_listens, write_interval_s=0.01)
    _, budgeted = parts.store.create_key("acme")
    _, free = parts.store.create_key("open")
    parts.store.set_budget("tenant", "acme", "day", 5.0, True)
    upstream = FakeUpstream()
    cfg = GatewayConfig.model_validate({"models": {MODEL: {}}})
    app = create_app(cfg, {MODEL: [spec("a", "http://a")]}, tenancy=Tenancy(parts), admin_token="t", transport=upstream)
    server = Server(app).start()
    try:
        for _ in range(4):
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key=budgeted, max_retries=0) as client:
                with pytest.raises(openai.APIStatusError) as err:
                    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=2)  # fmt: skip
            assert err.value.status_code == 503 and err.value.code == "budgets_unavailable"
            assert err.value.response.headers["retry-after"] == "1"
        assert upstream.to("a") == []
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=free, max_retries=0) as client:
            answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                    max_tokens=2)  # fmt: skip
        assert answer.usage is not None and answer.usage.completion_tokens == 2
        backend = http("GET", f"{server.url}/admin/backends", token="t").json()["backends"][0]
        assert backend["available"] and backend["errors"] == 0
    finally:
        server.stop()
