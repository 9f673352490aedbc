"""Budgets and rate limits under concurrency: in one process, in the database (row lock) and in Redis (leases
by Lua script), 50 simultaneous admissions against a budget that covers 5 admit exactly 5; finishing frees
what was not spent; replicas leasing from one Redis never pass a limit together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from flopex.ledger import (
    KeyInfo,
    LedgerStore,
    LocalBudgets,
    LocalMeter,
    Meter,
    RedisMeter,
    Refusal,
    Reservation,
    SqlBudgets,
    UsageRecord,
)
from tests.ledger.conftest import fresh_redis


def _local(store: LedgerStore) -> tuple[Meter, Any]:
    return LocalMeter(LocalBudgets(store)), None


def _sql(store: LedgerStore) -> tuple[Meter, Any]:
    return LocalMeter(SqlBudgets(store)), None


def _redis(store: LedgerStore) -> tuple[Meter, Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(fresh_redis())
    return RedisMeter(store, client), client


KINDS: dict[str, Callable[[LedgerStore], tuple[Meter, Any]]] = {"local": _local, "sql": _sql, "redis": _redis}


def _key(
    store: LedgerStore, limit: float | None, hard: bool = True, scope: str = "tenant", rpm: int | None = None
) -> KeyInfo:
    key_id, token = store.create_key("acme", rpm=rpm)
    if limit is not None:
        store.set_budget(scope, "acme" if scope == "tenant" else key_id, "day", limit, hard)
    info = store.authenticate(token)
    assert info is not None
    return info


def _run(kind: str, store: LedgerStore, body: Callable[[Meter], Any]) -> Any:
    async def main() -> Any:
        meter, client = KINDS[kind](store)
        try:
            return await body(meter)
        finally:
            await meter.close()
            if client is not None:
                await client.aclose()

    return asyncio.run(main())


def ok(results: list[Reservation | Refusal]) -> int:
    return sum(isinstance(r, Reservation) for r in results)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scope", ["tenant", "key"])
def test_fifty_at_once_against_a_budget_for_five(store: LedgerStore, kind: str, scope: str) -> None:
    key = _key(store, limit=5.5, scope=scope)

    async def body(meter: Meter) -> list[Any]:
        return list(await asyncio.gather(*(meter.admit(key, 1.0) for _ in range(50))))

    results = _run(kind, store, body)
    assert ok(results) == 5
    assert {r.status for r in results if isinstance(r, Refusal)} == {402}


@pytest.mark.parametrize("kind", KINDS)
def test_fifty_at_once_against_a_rate_of_three(store: LedgerStore, kind: str) -> None:
    if time.time() % 60 > 58:  # the window turns every minute: start in a fresh one
        time.sleep(61 - time.time() % 60)
    key = _key(store, limit=None, rpm=3)

    async def body(meter: Meter) -> list[Any]:
        return list(await asyncio.gather(*(meter.admit(key, 1.0) for _ in range(50))))

    results = _run(kind, store, body)
    assert ok(results) == 3
    refusals = [r for r in results if isinstance(r, Refusal)]
    assert all(r.status == 429 and r.retry_after_s is not None and 0 < r.retry_after_s <= 60 for r in refusals)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_refused_by_its_budget_does_not_use_up_the_rate(store: LedgerStore, kind: str) -> None:
    if time.time() % 60 > 58:
        time.sleep(61 - time.time() % 60)
    key = _key(store, limit=1.5, rpm=3)

    async def body(meter: Meter) -> list[int]:
        first = await meter.admit(key, 1.0)
        refused = [await meter.admit(key, 1.0) for _ in range(5)]
        assert isinstance(first, Reservation)
        await meter.finish(key, first, 0.0, 0)  # it failed: its reservation goes back
        await meter.drain()
        return [r.status if isinstance(r, Refusal) else 200 for r in [*refused, await meter.admit(key, 1.0)]]

    assert _run(kind, store, body) == [402] * 5 + [200]


@pytest.mark.parametrize("kind", KINDS)
def test_finishing_frees_what_was_not_spent(store: LedgerStore, kind: str) -> None:
    key = _key(store, limit=5.5)

    async def body(meter: Meter) -> tuple[int, int]:
        held = [await meter.admit(key, 1.0) for _ in range(5)]
        assert ok(held) == 5 and not isinstance(await meter.admit(key, 1.0), Reservation)
        for h in held[:4]:
            assert isinstance(h, Reservation)
            await meter.finish(key, h, 0.5, 10)  # each cost half of what was reserved
        await meter.drain()
        # 4 x 0.5 spent + 1 x 1.0 reserved = 3.0: 2 more fit under 5.5
        after_finish = ok([await meter.admit(key, 1.0) for _ in range(5)])
        last = held[4]
        assert isinstance(last, Reservation)
        await meter.finish(key, last, 0.0, 0)  # a request that failed costs nothing
        await meter.drain()
        released = ok([await meter.admit(key, 1.0) for _ in range(3)])
        return after_finish, released

    assert _run(kind, store, body) == (2, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_budget_starts_from_what_the_ledger_says_was_spent(store: LedgerStore, kind: str) -> None:
    key = _key(store, limit=5.5)
    store.write(
        [
            UsageRecord(
                f"r{i}", "acme", key.key_id, "m", None, None, 1, 1, 1.0, None, None, None, None, None, 200, time.time()
            )
            for i in range(4)
        ]
    )

    async def body(meter: Meter) -> int:
        return ok(list(await asyncio.gather(*(meter.admit(key, 1.0) for _ in range(10)))))

    assert _run(kind, store, body) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_soft_budget_alerts_and_lets_the_request_through(store: LedgerStore, kind: str) -> None:
    key = _key(store, limit=1.5, hard=False)

    async def body(meter: Meter) -> list[Any]:
        return [await meter.admit(key, 1.0) for _ in range(3)]

    first, second, third = _run(kind, store, body)
    assert isinstance(first, Reservation) and first.alerts == ()
    assert isinstance(second, Reservation) and isinstance(third, Reservation)
    assert "soft day budget" in second.alerts[0] and third.alerts


@pytest.mark.parametrize("kind", KINDS)
def test_tokens_per_minute_count_what_requests_used(store: LedgerStore, kind: str) -> None:
    if time.time() % 60 > 58:
        time.sleep(61 - time.time() % 60)
    key_id, token = store.create_key("acme", tpm=50)
    key = store.authenticate(token)
    assert key is not None and key.key_id == key_id

    async def body(meter: Meter) -> list[bool]:
        admitted = []
        for _ in range(4):
            r = await meter.admit(key, 0.0)
            admitted.append(isinstance(r, Reservation))
            if isinstance(r, Reservation):
                await meter.finish(key, r, 0.0, 20)  # 20 tokens each: 60 >= 50 after the third
                await meter.drain()
        return admitted

    assert _run(kind, store, body) == [True, True, True, False]


def test_admissions_survive_redis_forgetting_its_scripts(store: LedgerStore) -> None:
    """A Redis that restarted (or ran SCRIPT FLUSH) has lost the Lua scripts: the meter loads them again."""
    key = _key(store, limit=2.5)

    async def body(meter: Meter) -> list[bool]:
        assert isinstance(meter, RedisMeter)
        results = [isinstance(await meter.admit(key, 1.0), Reservation)]
        await meter.redis.script_flush()
        after = await asyncio.gather(*(meter.admit(key, 1.0) for _ in range(3)))
        results += [isinstance(r, Reservation) for r in after]
        return results

    assert _run("redis", store, body) == [True, True, False, False]


def test_two_replicas_leasing_from_one_redis_never_pass_a_budget_together(store: LedgerStore) -> None:
    key = _key(store, limit=5.5)

    async def main() -> list[bool]:
        import redis.asyncio as aioredis

        client = aioredis.from_url(fresh_redis())
        a, b = RedisMeter(store, client), RedisMeter(store, client)
        try:
            results = await asyncio.gather(*((a, b)[i % 2].admit(key, 1.0) for i in range(50)))
            return [isinstance(r, Reservation) for r in results]
        finally:
            await a.close()
            await b.close()
            await client.aclose()

    assert sum(asyncio.run(main())) == 5


def test_a_replica_gives_back_what_it_leased_and_did_not_use(store: LedgerStore) -> None:
    key = _key(store, limit=10.0)

    async def main() -> tuple[int, bool, bool, bool]:
        import redis.asyncio as aioredis

        client = aioredis.from_url(fresh_redis())
        a, b = RedisMeter(store, client), RedisMeter(store, client)
        try:
            held = await a.admit(key, 1.0)  # leases 1.0 and 2% of the limit beyond it
            assert isinstance(held, Reservation)
            admitted = 0
            while isinstance(await b.admit(key, 1.0), Reservation):
                admitted += 1
            refused_again = not isinstance(await b.admit(key, 1.0), Reservation)
            await a.finish(key, held, 1.0, 0)
            await a.drain()  # reports the spend and gives back the unused sliver
            await b.drain()
            one_more = isinstance(await b.admit(key, 1.0), Reservation)
            then_none = not isinstance(await b.admit(key, 1.0), Reservation)
            return admitted, refused_again, one_more, then_none
        finally:
            await a.close()
            await b.close()
            await client.aclose()

    # b gets 8 while a holds its 1.2; once a reports and gives back, the tenth fits, and nothing after it
    assert asyncio.run(main()) == (8, True, True, True)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_refused_by_one_budget_holds_nothing_on_the_others(store: LedgerStore, kind: str) -> None:
    """All or none: the key's budget refusing must leave nothing reserved on its tenant's budget."""
    small_id, small_token = store.create_key("acme")
    store.set_budget("tenant", "acme", "day", 10.5, True)  # first: it is reserved before the key's refuses
    store.set_budget("key", small_id, "day", 2.5, True)
    _, token = store.create_key("acme")
    small, other = store.authenticate(small_token), store.authenticate(token)
    assert small is not None and other is not None

    async def body(meter: Meter) -> tuple[int, int]:
        first = ok(list(await asyncio.gather(*(meter.admit(small, 1.0) for _ in range(20)))))
        second = ok(list(await asyncio.gather(*(meter.admit(other, 1.0) for _ in range(20)))))
        return first, second

    assert _run(kind, store, body) == (2, 8)
