"""The ledger's first tables: tenants, API keys, budgets and their usage, usage records.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("name", sa.String(100)),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("scope_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("limit_usd", sa.Float, nullable=False),
        sa.Column("hard", sa.Boolean, nullable=False),
    )
    op.create_index("ix_budgets_scope", "budgets", ["scope", "scope_id"])
    op.create_table(
        "budget_usage",
        sa.Column("budget_id", sa.Integer, sa.ForeignKey("budgets.id"), primary_key=True),
        sa.Column("period_key", sa.String(10), primary_key=True),
        sa.Column("reserved", sa.Float, nullable=False),
        sa.Column("spent", sa.Float, nullable=False),
    )
    op.create_table(
        "usage_records",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(200)),
        sa.Column("offer", sa.String(300)),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("energy_wh", sa.Float),
        sa.Column("co2e_g", sa.Float),
        sa.Column("label", sa.JSON),
        sa.Column("ttft_s", sa.Float),
        sa.Column("latency_s", sa.Float),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("ix_usage_tenant_created", "usage_records", ["tenant_id", "created"])
    op.create_index("ix_usage_key_created", "usage_records", ["key_id", "created"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("budget_usage")
    op.drop_table("budgets")
    op.drop_table("api_keys")
    op.drop_table("tenants")
