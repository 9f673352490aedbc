"""The gateway with tenants on, over real HTTP with the openai client: keys, scopes, budgets under 50 concurrent
requests, rate limits, the usage API (one tenant never sees another's) and the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from flopex.gateway import BackendSpec, BackendState, GatewayConfig, Tenancy, create_app, reservation_usd
from flopex.ledger import LedgerStore, build_ledger
from tests.gateway.conftest import MODEL, Server, emulator, http, spec
from tests.ledger.conftest import fresh_postgres, fresh_redis

ADMIN = "test-admin-token"
MAX_TOKENS = 20
# what a request of MAX_TOKENS reserves on `spec`'s defaults ($2/h, TTFT 50 ms, TPOT 10 ms): twice its time alone
RESERVED = reservation_usd(BackendState(spec("h100", "http://unused")), 1, MAX_TOKENS)


@contextmanager
def tenant_gateway(
    specs: list[BackendSpec], db_url: str, journal: Path, redis_url: str | None = None, **config: Any
) -> Iterator[tuple[Server, LedgerStore]]:
    parts = build_ledger(db_url, journal, redis_url, write_interval_s=0.01)
    cfg = GatewayConfig.model_validate({"models": {MODEL: {}}, **config})
    app = create_app(cfg, {MODEL: specs}, seed=1, tenancy=Tenancy(parts), admin_token=ADMIN)
    server = Server(app).start()
    try:
        yield server, parts.store
    finally:
        server.stop()


@pytest.fixture()
def emu() -> Iterator[Server]:
    with emulator("H100-SXM", time_scale=0.0) as e:
        yield e


@pytest.fixture()
def gw(emu: Server, tmp_path: Path) -> Iterator[tuple[Server, LedgerStore]]:
    with tenant_gateway([spec("h100", emu.url)], f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "journal") as g:
        yield g


def client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def ask(server: Server, key: str, **kw: Any) -> Any:
    """One chat completion, raw (headers and all); the client's connections are closed before it returns."""
    args: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}
    with client(server, key) as c:
        raw = c.chat.completions.with_raw_response.create(**{**args, **kw})
        raw.parse()
        return raw


def wait_for_records(store: LedgerStore, n: int, timeout: float = 10.0) -> list[str]:
    deadline = time.time() + timeout
    while True:
        ids = store.request_ids()
        if len(ids) >= n or time.time() > deadline:
            return ids
        time.sleep(0.05)


@pytest.mark.parametrize("backing", ["sqlite", "postgresql", "postgresql+redis"])
def test_fifty_concurrent_requests_spend_no_more_than_the_budget(tmp_path: Path, backing: str) -> None:
    """The budget covers 5.5 reservations. The backend is slow enough (about a second an answer) that all 50
    arrive while the first five are in flight; what those five cost is their share of the backend's time."""
    db = f"sqlite:///{tmp_path / 'l.db'}" if backing == "sqlite" else fresh_postgres()
    redis_url = fresh_redis() if backing.endswith("redis") else None
    with (
        emulator("H100-SXM", time_scale=4.0) as slow,
        tenant_gateway([spec("h100", slow.url)], db, tmp_path / "j", redis_url) as (server, store),
    ):
        _, token = store.create_key("acme")
        limit = 5.5 * RESERVED
        store.set_budget("tenant", "acme", "day", limit, True)

        def one(_: int) -> int:
            try:
                return ask(server, token).status_code  # type: ignore[no-any-return]
            except openai.APIStatusError as exc:
                assert exc.status_code != 402 or exc.code == "insufficient_quota"
                return exc.status_code

        with ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(one, range(50)))
        assert codes.count(200) == 5 and codes.count(402) == 45
        wait_for_records(store, 5)
        (usage,) = store.usage("acme")
        assert usage["requests"] == 5
        assert 0 < usage["cost_usd"] <= 5 * RESERVED < limit


def test_every_answer_names_its_ledger_record(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    _, token = store.create_key("acme")
    raw = ask(server, token)
    rid = raw.headers["x-flopex-request-id"]
    answer = raw.parse()
    assert wait_for_records(store, 1) == [rid]
    (r,) = store.records("acme")
    assert (r["model"], r["backend"], r["status"]) == (MODEL, "h100", 200)
    assert r["completion_tokens"] == answer.usage.completion_tokens == MAX_TOKENS
    assert 0 < r["cost_usd"] <= RESERVED and r["label"]["cost_usd"] == r["cost_usd"]
    assert r["label"]["label_schema_version"] == 2 and r["label"]["backend"] == "h100"
    assert r["energy_wh"] == r["label"]["energy_wh_facility"] > 0 and r["latency_s"] > 0


def test_a_streamed_answer_is_metered_once(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    _, token = store.create_key("acme")
    with client(server, token) as c:
        messages: Any = [{"role": "user", "content": "hi"}]
        chunks = list(c.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS, stream=True))
    assert chunks
    wait_for_records(store, 1)
    time.sleep(0.2)
    (r,) = store.records("acme")
    assert r["completion_tokens"] == MAX_TOKENS and r["ttft_s"] is not None
    assert 0 < r["cost_usd"] <= RESERVED and r["label"]["cost_usd"] == r["cost_usd"]


@pytest.mark.parametrize(
    ("key", "code"),
    [("", "invalid_api_key"), ("sk-not-ours", "invalid_api_key"), ("fpx_0000_wrong", "invalid_api_key")],
)
def test_a_request_without_a_valid_key_is_refused(gw: tuple[Server, LedgerStore], key: str, code: str) -> None:
    server, _ = gw
    with pytest.raises(openai.AuthenticationError) as info:
        ask(server, key or "x", extra_headers={"authorization": key})
    assert info.value.code == code


def test_a_revoked_key_stops_working(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    key_id, token = store.create_key("acme")
    assert ask(server, token).status_code == 200
    assert http("POST", f"{server.url}/admin/keys/{key_id}/revoke", token=ADMIN).status == 200
    with pytest.raises(openai.AuthenticationError):
        ask(server, token)


def test_scopes_limit_models_and_jurisdictions(emu: Server, tmp_path: Path) -> None:
    specs = [spec("eu", emu.url, jurisdictions=("EU",)), spec("us", emu.url, jurisdictions=("US",))]
    with tenant_gateway(specs, f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "j") as (server, store):
        _, eu_key = store.create_key("acme", jurisdictions=["eu"])
        _, other_model = store.create_key("acme", models=["qwen3-32b"])
        backends = {ask(server, eu_key).parse().model_extra["flopex"]["backend"] for _ in range(12)}
        assert backends == {"eu"}
        with pytest.raises(openai.PermissionDeniedError) as info:
            ask(server, eu_key, extra_headers={"x-flopex-jurisdiction": "US"})
        assert info.value.code == "jurisdiction_not_allowed"
        with pytest.raises(openai.PermissionDeniedError) as info:
            ask(server, other_model)
        assert info.value.code == "model_not_allowed" and "qwen3-32b" in str(info.value)


def test_requests_per_minute_per_key(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    _, limited = store.create_key("acme", rpm=3)
    _, other = store.create_key("acme")
    if time.time() % 60 > 55:  # the window turns every minute: start in a fresh one
        time.sleep(61 - time.time() % 60)
    assert [ask(server, limited).status_code for _ in range(3)] == [200] * 3
    with pytest.raises(openai.RateLimitError) as info:
        ask(server, limited)
    assert info.value.code == "rate_limit_exceeded"
    assert 0 < int(info.value.response.headers["retry-after"]) <= 60
    assert ask(server, other).status_code == 200  # the limit is the key's, not the tenant's
    metrics = http("GET", f"{server.url}/metrics", token=ADMIN).text
    assert f'flopex_tenant_refusals_total{{model="{MODEL}",status="429"}} 1.0' in metrics


def test_a_request_with_no_max_tokens_is_bounded_and_a_bad_one_refused(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    _, token = store.create_key("acme")
    answer = ask(server, token, max_tokens=openai.NOT_GIVEN).parse()
    assert answer.usage.completion_tokens == 4096  # the default bound the reservation covered
    with pytest.raises(openai.BadRequestError) as info:
        ask(server, token, max_tokens=-3)
    assert info.value.code == "invalid_max_tokens" and "-3" in str(info.value)


def test_a_tenant_never_sees_another_tenants_usage(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    a_id, a = store.create_key("alpha")
    b_id, b = store.create_key("beta")
    for _ in range(2):
        ask(server, a)
    for _ in range(3):
        ask(server, b)
    wait_for_records(store, 5)

    def usage(token: str, **params: str) -> Any:
        return http("GET", f"{server.url}/v1/usage", token=token, **params)

    mine = usage(a).json()
    assert mine["tenant"] == "alpha" and mine["data"][0]["requests"] == 2
    assert usage(a, tenant="beta").json()["tenant"] == "alpha"  # the query cannot name another tenant
    assert usage(b).json()["data"][0]["requests"] == 3
    assert usage("fpx_x_y").status == 401
    assert usage(a, group_by="modle").json()["error"]["message"].endswith("Did you mean 'model'?")
    # a tenant's key is no admin key: no other tenant's keys, no revoking them
    assert http("GET", f"{server.url}/admin/keys", token=a).status == 401
    assert http("POST", f"{server.url}/admin/keys/{b_id}/revoke", token=a).status == 401
    assert ask(server, b).status_code == 200


def test_the_admin_api_needs_the_admin_key(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    keys, budgets = f"{server.url}/admin/keys", f"{server.url}/admin/budgets"
    assert http("POST", keys, {"tenant": "acme"}).status == 401
    assert http("POST", keys, {"tenant": "acme"}, token="no").status == 401
    created = http("POST", keys, {"tenant": "acme", "rpm": 100, "name": "ci"}, token=ADMIN)
    assert created.status == 201
    token = created.json()["key"]
    assert ask(server, token).status_code == 200
    listed = http("GET", keys, token=ADMIN).text
    assert token.split("_", 2)[2] not in listed and created.json()["id"] in listed
    bad = http("POST", keys, {"tenant": "acme", "models": ["llama-3.1-8"]}, token=ADMIN)
    assert bad.status == 400 and "Did you mean 'llama-3.1-8b'" in bad.json()["error"]["message"]
    bad = http("POST", keys, b"{", token=ADMIN)
    assert bad.status == 400 and '"tenant"' in bad.json()["error"]["message"]
    budget = {"scope": "tenant", "scope_id": "acme", "period": "dya", "usd": 1}
    bad = http("POST", budgets, budget, token=ADMIN)
    assert bad.status == 400 and "Did you mean 'day'" in bad.json()["error"]["message"]
    assert http("POST", budgets, {**budget, "period": "day"}, token=ADMIN).status == 201
    (b,) = http("GET", budgets, token=ADMIN).json()["data"]
    assert (b["tenant"], b["limit_usd"], b["hard"]) == ("acme", 1.0, True)
    # an admin key made by the admin works as the admin token does
    admin_key = http("POST", keys, {"tenant": "ops", "admin": True}, token=ADMIN).json()["key"]
    assert http("GET", keys, token=admin_key).status == 200


def test_a_failed_request_is_recorded_and_costs_nothing(tmp_path: Path) -> None:
    dead = spec("dead", "http://127.0.0.1:9")  # nothing listens on the discard port
    with tenant_gateway([dead], f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "j") as (server, store):
        _, token = store.create_key("acme")
        store.set_budget("tenant", "acme", "day", 1.5 * RESERVED, True)
        for _ in range(3):  # each reserves the whole budget but spends nothing: all three are admitted
            with pytest.raises(openai.APIStatusError) as info:
                ask(server, token)
            assert info.value.status_code in (502, 503)
        wait_for_records(store, 3)
        records = store.records("acme")
        assert len(records) == 3 and all(r["cost_usd"] == 0 and r["status"] >= 500 for r in records)


def test_a_soft_budget_answers_with_an_alert(gw: tuple[Server, LedgerStore]) -> None:
    server, store = gw
    _, token = store.create_key("acme")
    store.set_budget("tenant", "acme", "day", RESERVED, False)  # the first fits exactly; the second, after it spent
    assert "x-flopex-budget-alert" not in ask(server, token).headers
    alert = ask(server, token).headers["x-flopex-budget-alert"]
    assert "tenant acme is over its soft day budget" in alert
    metrics = http("GET", f"{server.url}/metrics", token=ADMIN).text
    assert f'flopex_budget_alerts_total{{model="{MODEL}"}} 1.0' in metrics


def test_a_ledger_that_stops_answering_gets_503_not_500(emu: Server, tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with tenant_gateway([spec("h100", emu.url)], f"sqlite:///{db}", tmp_path / "j") as (server, store):
        _, known = store.create_key("acme")
        _, fresh = store.create_key("acme")
        assert ask(server, known).status_code == 200
        store.engine.dispose()
        for leftover in tmp_path.glob("l.db*"):
            leftover.unlink()
        db.write_bytes(b"this is no SQLite database" * 100)
        with pytest.raises(openai.InternalServerError) as info:
            ask(server, fresh)  # its key is not cached: it needs the database
        assert info.value.status_code == 503 and info.value.code == "keys_unavailable"
        usage = http("GET", f"{server.url}/v1/usage", token=known)
        assert usage.status == 503 and usage.json()["error"]["code"] == "ledger_unavailable"
        assert ask(server, known).status_code == 200  # a cached key still works; its record waits in the journal
    assert any((tmp_path / "j").glob("journal-*.jsonl"))  # kept for the next start to replay
