"""Putting the ledger together for a gateway: the store (migrated), the meter and the usage writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flopex.ledger._runtime import LocalBudgets, LocalMeter, Meter, RedisMeter, SqlBudgets, UsageWriter
from flopex.ledger._store import LedgerStore

__all__ = ["LedgerParts", "build_ledger"]


@dataclass
class LedgerParts:
    store: LedgerStore
    meter: Meter
    writer: UsageWriter
    redis: Any  # the asyncio Redis client, when one is configured


def build_ledger(
    database_url: str, journal_dir: Path, redis_url: str | None = None, write_interval_s: float = 0.05
) -> LedgerParts:
    """Rate limits and budgets shared through Redis when a URL is given; else rate limits in this process and
    budgets in the database for PostgreSQL (several gateway processes may share it) or in this process for
    SQLite (one gateway)."""
    store = LedgerStore(database_url)
    store.migrate()
    writer = UsageWriter(store, journal_dir, interval_s=write_interval_s)
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(redis_url)
        return LedgerParts(store, RedisMeter(store, redis), writer, redis)
    budgets = SqlBudgets(store) if store.dialect == "postgresql" else LocalBudgets(store)
    return LedgerParts(store, LocalMeter(budgets), writer, None)
