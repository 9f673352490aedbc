"""The ledger's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create and evolve them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

__all__ = ["api_keys", "budget_usage", "budgets", "metadata", "tenants", "usage_records"]

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created", Float, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(100)),
    Column("salt", String(64), nullable=False),
    Column("hash", String(128), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("admin", Boolean, nullable=False, default=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(8), nullable=False),  # tenant | key
    Column("scope_id", String(64), nullable=False),
    Column("period", String(8), nullable=False),  # day | month
    Column("limit_usd", Float, nullable=False),
    Column("hard", Boolean, nullable=False),
    Index("ix_budgets_scope", "scope", "scope_id"),
)

budget_usage = Table(
    "budget_usage",
    metadata,
    Column("budget_id", Integer, ForeignKey("budgets.id"), primary_key=True),
    Column("period_key", String(10), primary_key=True),
    Column("reserved", Float, nullable=False, default=0.0),
    Column("spent", Float, nullable=False, default=0.0),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("backend", String(200)),
    Column("offer", String(300)),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("energy_wh", Float),
    Column("co2e_g", Float),
    Column("label", JSON),
    Column("ttft_s", Float),
    Column("latency_s", Float),
    Column("status", Integer, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_usage_tenant_created", "tenant_id", "created"),
    Index("ix_usage_key_created", "key_id", "created"),
)
