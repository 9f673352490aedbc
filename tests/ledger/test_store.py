"""The ledger store on SQLite and PostgreSQL: keys, budgets, usage records and the schema's migrations."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from flopex.errors import LedgerError
from flopex.ledger import LedgerStore, UsageRecord, amount, period_bounds
from flopex.ledger._schema import api_keys, metadata


def record(rid: str, tenant: str = "acme", key: str = "k1", **kw: object) -> UsageRecord:
    values: dict[str, object] = {
        "request_id": rid, "tenant_id": tenant, "key_id": key, "model": "llama-3.1-8b", "backend": "h100",
        "offer": "test", "prompt_tokens": 10, "completion_tokens": 20, "cost_usd": 0.01, "energy_wh": 0.5,
        "co2e_g": 0.2, "label": {"cost_usd": 0.01}, "ttft_s": 0.1, "latency_s": 0.3, "status": 200,
        "created": time.time(),
    }  # fmt: skip
    values.update(kw)
    return UsageRecord(**values)  # type: ignore[arg-type]


def test_migrations_build_the_schema_the_code_uses(store: LedgerStore) -> None:
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), metadata)
    assert diff == []


def test_migrate_twice_is_harmless(store: LedgerStore) -> None:
    store.create_tenant("acme")
    store.migrate()
    assert store.tenants() == ["acme"]


def test_a_key_authenticates_only_with_its_secret(store: LedgerStore) -> None:
    key_id, token = store.create_key("acme", models=["llama-3.1-8b"], jurisdictions=["eu"], rpm=5, tier="batch")
    info = store.authenticate(token)
    assert info is not None
    assert (info.key_id, info.tenant_id, info.rpm) == (key_id, "acme", 5)
    assert info.scopes == {"models": ["llama-3.1-8b"], "jurisdictions": ["EU"], "tier": "batch"}
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (wrong, f"fpx_{key_id}_", "fpx_nope_secret", token.replace("fpx_", "sk_"), ""):
        assert store.authenticate(bad) is None


def test_keys_are_stored_salted_and_hashed(store: LedgerStore) -> None:
    _, token_a = store.create_key("acme")
    _, token_b = store.create_key("acme")
    secrets = [t.split("_", 2)[2] for t in (token_a, token_b)]
    with store.engine.connect() as c:
        rows = c.execute(select(api_keys)).mappings().all()
    dumped = repr([dict(r) for r in rows])
    for s in secrets:
        assert s not in dumped
    assert rows[0]["salt"] != rows[1]["salt"]
    listed = repr(store.list_keys())
    assert "salt" not in listed and "hash" not in listed


def test_a_revoked_key_is_refused(store: LedgerStore) -> None:
    key_id, token = store.create_key("acme")
    assert store.revoke(key_id)
    assert store.authenticate(token) is None
    assert not store.revoke("no-such-key")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tenant_id": "bad tenant!"}, "letters, digits"),
        ({"tenant_id": "acme", "tier": "batchy"}, "Did you mean 'batch'"),
        ({"tenant_id": "acme", "rpm": 0}, "at least 1 per minute"),
    ],
)
def test_bad_keys_are_refused_with_the_field(store: LedgerStore, kwargs: dict[str, object], message: str) -> None:
    rest = dict(kwargs)
    tenant = str(rest.pop("tenant_id"))
    with pytest.raises(LedgerError, match=message):
        store.create_key(tenant, **rest)  # type: ignore[arg-type]


def test_budgets_name_what_is_wrong(store: LedgerStore) -> None:
    store.create_tenant("acme")
    with pytest.raises(LedgerError, match="Did you mean 'acme'"):
        store.set_budget("tenant", "acmee", "day", 5.0, True)
    with pytest.raises(LedgerError, match="Did you mean 'month'"):
        store.set_budget("tenant", "acme", "mnth", 5.0, True)
    with pytest.raises(LedgerError, match="tenant or key"):
        store.set_budget("team", "acme", "day", 5.0, True)
    with pytest.raises(LedgerError, match="at least 0"):
        store.set_budget("tenant", "acme", "day", -1.0, True)
    first = store.set_budget("tenant", "acme", "day", 5.0, True)
    assert store.set_budget("tenant", "acme", "day", 7.0, False) == first  # one budget per scope and period
    (b,) = store.list_budgets("acme")
    assert (b["limit_usd"], b["hard"]) == (7.0, False)


def test_writing_a_record_twice_keeps_one(store: LedgerStore) -> None:
    store.write([record("r1"), record("r2")])
    store.write([record("r2"), record("r3")])  # a replay overlapping what was written
    assert sorted(store.request_ids()) == ["r1", "r2", "r3"]


def test_usage_is_the_tenants_own_and_sums_its_records(store: LedgerStore) -> None:
    day1 = datetime(2026, 11, 2, 12, tzinfo=UTC).timestamp()
    day2 = datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp()
    store.write(
        [
            record("a1", created=day1, cost_usd=0.25, model="m1"),
            record("a2", created=day2, cost_usd=0.5, model="m1", status=502),
            record("a3", created=day2, cost_usd=1.0, model="m2", energy_wh=None, co2e_g=None),
            record("b1", tenant="beta", created=day2, cost_usd=9.0, model="m1"),
        ]
    )
    by_model = {r["model"]: r for r in store.usage("acme", group_by="model")}
    assert by_model["m1"]["requests"] == 2 and by_model["m1"]["errors"] == 1
    assert by_model["m1"]["cost_usd"] == pytest.approx(0.75)
    assert by_model["m2"]["energy_wh"] == 0
    by_day = store.usage("acme", group_by="day")
    assert [r["day"] for r in by_day] == ["2026-11-02", "2026-11-03"]
    assert sum(r["cost_usd"] for r in by_day) == pytest.approx(1.75)
    assert store.usage("acme", since=day2 - 1, until=day2 + 1, group_by="model")[0]["cost_usd"] == pytest.approx(1.0)
    with pytest.raises(LedgerError, match="Did you mean 'model'"):
        store.usage("acme", group_by="modle")


def test_spent_counts_the_budget_period_only(store: LedgerStore) -> None:
    key_id, _ = store.create_key("acme")
    budget_id = store.set_budget("key", key_id, "month", 10.0, True)
    (budget,) = [b for b in store.budgets_for(store.authenticate(_) or pytest.fail()) if b.id == budget_id]
    inside = datetime(2026, 11, 30, 23, 59, tzinfo=UTC).timestamp()
    outside = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    store.write([record("in", key=key_id, created=inside, cost_usd=1.5), record("out", key=key_id, created=outside)])
    assert store.spent(budget, "2026-11") == pytest.approx(1.5)
    assert store.spent(budget, "2026-12") == pytest.approx(0.01)


@settings(max_examples=50, deadline=None)
@given(st.integers(2000, 2100), st.integers(1, 12))
def test_month_bounds_tile_the_year(year: int, month: int) -> None:
    start, end = period_bounds(f"{year}-{month:02d}")
    following = f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"
    assert end == period_bounds(following)[0]
    assert 28 * 86400 <= end - start <= 31 * 86400


@given(st.floats(min_value=1e-12, max_value=1e9))
def test_amounts_for_people_keep_four_significant_digits(x: float) -> None:
    shown = amount(x)
    assert float(shown.replace(",", "")) == pytest.approx(x, rel=1e-3)


def test_days_split_at_utc_midnight(store: LedgerStore) -> None:
    midnight = datetime(2026, 11, 3, tzinfo=UTC).timestamp()
    store.write([record("late", created=midnight - 0.1), record("early", created=midnight + 0.1)])
    assert [r["day"] for r in store.usage("acme", group_by="day")] == ["2026-11-02", "2026-11-03"]
