"""Tenants, API keys, budgets, rate limits and the usage ledger (SQLite by default, PostgreSQL by URL; Redis
for counters shared across gateway replicas)."""

from __future__ import annotations

from flopex.ledger._build import LedgerParts, build_ledger
from flopex.ledger._runtime import (
    Budgets,
    LocalBudgets,
    LocalMeter,
    Meter,
    RedisMeter,
    Refusal,
    Reservation,
    SqlBudgets,
    UsageWriter,
    reconcile_redis,
)
from flopex.ledger._statement import Statement, amount, build_statement, known_part, unknown_note
from flopex.ledger._store import (
    GROUP_BY,
    TIERS,
    Budget,
    KeyInfo,
    LedgerStore,
    UsageRecord,
    default_url,
    period_bounds,
    period_key,
    safe_url,
)

__all__ = [
    "GROUP_BY",
    "TIERS",
    "Budget",
    "Budgets",
    "KeyInfo",
    "LedgerParts",
    "LedgerStore",
    "LocalBudgets",
    "LocalMeter",
    "Meter",
    "RedisMeter",
    "Refusal",
    "Reservation",
    "SqlBudgets",
    "Statement",
    "amount",
    "UsageRecord",
    "UsageWriter",
    "build_ledger",
    "build_statement",
    "default_url",
    "known_part",
    "period_bounds",
    "period_key",
    "reconcile_redis",
    "safe_url",
    "unknown_note",
]
