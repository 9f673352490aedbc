"""The ledger store: tenants, keys, budgets and usage records in SQLite (WAL) or PostgreSQL, via SQLAlchemy 2.

API keys are `fpx_<key id>_<secret>`: the secret (32 random bytes) is shown once; the store keeps a salted
SHA-256 of it (a 256-bit random secret needs no slow hash) and compares in constant time."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Engine, Integer, case, cast, create_engine, event, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from flopex.errors import LedgerError, did_you_mean
from flopex.ledger._schema import api_keys, budget_usage, budgets, tenants, usage_records

__all__ = [
    "GROUP_BY",
    "TIERS",
    "Budget",
    "KeyInfo",
    "LedgerStore",
    "UsageRecord",
    "period_bounds",
    "period_key",
    "safe_url",
]

TIERS = ("interactive", "batch")
GROUP_BY = ("model", "backend", "day")
_TOTALS = (
    "requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "energy_wh", "co2e_g",
    "energy_unknown_requests", "energy_unknown_cost_usd", "co2e_unknown_requests", "co2e_unknown_cost_usd",
)  # fmt: skip
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant_id: str
    scopes: dict[str, Any]
    rpm: int | None
    tpm: int | None
    admin: bool

    def allows_model(self, model: str) -> bool:
        models = self.scopes.get("models")
        return not models or model in models


@dataclass(frozen=True)
class Budget:
    id: int
    scope: str
    scope_id: str
    period: str
    limit_usd: float
    hard: bool


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    tenant_id: str
    key_id: str
    model: str
    backend: str | None
    offer: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    energy_wh: float | None
    co2e_g: float | None
    label: dict[str, Any] | None
    ttft_s: float | None
    latency_s: float | None
    status: int
    created: float

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def period_key(period: str, at: float | None = None) -> str:
    """The UTC day (YYYY-MM-DD) or month (YYYY-MM) that `at` (default now) falls in."""
    day = _utc_day(int((at if at is not None else time.time()) // 86400))
    return day if period == "day" else day[:7]


@functools.lru_cache(maxsize=64)
def _utc_day(days_since_epoch: int) -> str:
    return datetime.fromtimestamp(days_since_epoch * 86400, tz=UTC).strftime("%Y-%m-%d")


def period_bounds(period: str) -> tuple[float, float]:
    """[start, end) in Unix seconds of a day (YYYY-MM-DD) or month (YYYY-MM), in UTC."""
    if len(period) == 10:
        start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC)
        return start.timestamp(), start.timestamp() + 86400
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start.timestamp(), end.timestamp()


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


class LedgerStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.dialect = self.engine.dialect.name
        self.safe_url = safe_url(url)
        columns = [c.name for c in usage_records.columns]
        marks = [f"%({c})s" if self.dialect == "postgresql" else f":{c}" for c in columns]
        self._insert_records = (
            f"INSERT INTO usage_records ({', '.join(columns)}) VALUES ({', '.join(marks)}) "
            "ON CONFLICT (request_id) DO NOTHING"
        )

    # --- schema ---------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(resources.files("flopex.ledger").joinpath("migrations")))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        try:
            command.upgrade(cfg, "head")
        except Exception as exc:  # the database's own message names what is wrong
            raise LedgerError(f"cannot migrate the ledger at {self.safe_url}: {exc}") from None

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # --- tenants and keys -----------------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, name: str | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(
                self._insert(tenants)
                .values(id=tenant_id, name=name or tenant_id, created=time.time())
                .on_conflict_do_nothing()
            )

    def create_key(
        self,
        tenant_id: str,
        *,
        models: Sequence[str] = (),
        jurisdictions: Sequence[str] = (),
        rpm: int | None = None,
        tpm: int | None = None,
        tier: str = "interactive",
        admin: bool = False,
        name: str | None = None,
    ) -> tuple[str, str]:
        """(key id, the full key to hand over once). Scopes: the models it may call (all when empty), the
        jurisdictions its data may go to (any when empty) and its SLO tier (batch is shed first under load)."""
        if not _TENANT.fullmatch(tenant_id):
            raise LedgerError(
                f"tenant {tenant_id!r}: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit."
            )
        if tier not in TIERS:
            raise LedgerError(f"tier {tier!r}: choose {' or '.join(TIERS)}.{did_you_mean(tier, TIERS)}")
        for field, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise LedgerError(f"{field} {value}: a rate limit is at least 1 per minute (leave it out for none).")
        self.create_tenant(tenant_id)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        scopes = {"models": list(models), "jurisdictions": [j.upper() for j in jurisdictions], "tier": tier}
        with self.engine.begin() as c:
            c.execute(
                insert(api_keys).values(
                    id=key_id,
                    tenant_id=tenant_id,
                    name=name,
                    salt=salt,
                    hash=_digest(salt, secret),
                    scopes=scopes,
                    rpm=rpm,
                    tpm=tpm,
                    admin=admin,
                    revoked=False,
                    created=time.time(),
                )
            )
        return key_id, f"fpx_{key_id}_{secret}"

    def authenticate(self, token: str) -> KeyInfo | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "fpx":
            return None
        with self.engine.connect() as c:
            row = c.execute(select(api_keys).where(api_keys.c.id == parts[1])).mappings().first()
        if row is None or row["revoked"] or not hmac.compare_digest(row["hash"], _digest(row["salt"], parts[2])):
            return None
        return KeyInfo(row["id"], row["tenant_id"], dict(row["scopes"]), row["rpm"], row["tpm"], bool(row["admin"]))

    def list_keys(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        query = select(
            api_keys.c.id,
            api_keys.c.tenant_id,
            api_keys.c.name,
            api_keys.c.scopes,
            api_keys.c.rpm,
            api_keys.c.tpm,
            api_keys.c.admin,
            api_keys.c.revoked,
            api_keys.c.created,
        )
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(query.order_by(api_keys.c.created)).mappings()]

    def revoke(self, key_id: str) -> bool:
        with self.engine.begin() as c:
            return bool(c.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked=True)).rowcount)

    # --- budgets --------------------------------------------------------------------------------------------
    def set_budget(self, scope: str, scope_id: str, period: str, limit_usd: float, hard: bool) -> int:
        """Create or change the budget of a tenant or key for a day or month (one per scope and period)."""
        if scope not in ("tenant", "key"):
            raise LedgerError(f"scope {scope!r}: choose tenant or key.{did_you_mean(scope, ('tenant', 'key'))}")
        if period not in ("day", "month"):
            raise LedgerError(f"period {period!r}: choose day or month.{did_you_mean(period, ('day', 'month'))}")
        if not limit_usd >= 0:
            raise LedgerError(f"limit {limit_usd}: a budget is at least 0 USD.")
        table = tenants if scope == "tenant" else api_keys
        with self.engine.begin() as c:
            if c.execute(select(table.c.id).where(table.c.id == scope_id)).first() is None:
                known = [r[0] for r in c.execute(select(table.c.id))]
                raise LedgerError(f"no {scope} {scope_id!r} in the ledger.{did_you_mean(scope_id, known)}")
            existing = c.execute(
                select(budgets.c.id).where(
                    budgets.c.scope == scope, budgets.c.scope_id == scope_id, budgets.c.period == period
                )
            ).scalar()
            if existing is not None:
                c.execute(update(budgets).where(budgets.c.id == existing).values(limit_usd=limit_usd, hard=hard))
                return int(existing)
            values = {"scope": scope, "scope_id": scope_id, "period": period, "limit_usd": limit_usd, "hard": hard}
            key = c.execute(insert(budgets).values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def list_budgets(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Every budget (of one tenant and its keys, when given) with what its current period has spent."""
        with self.engine.connect() as c:
            rows = list(c.execute(select(budgets).order_by(budgets.c.id)).mappings())
            key_tenant = {r[0]: r[1] for r in c.execute(select(api_keys.c.id, api_keys.c.tenant_id))}
        out = []
        for r in rows:
            b = Budget(r["id"], r["scope"], r["scope_id"], r["period"], r["limit_usd"], bool(r["hard"]))
            tenant = b.scope_id if b.scope == "tenant" else key_tenant.get(b.scope_id)
            if tenant_id is not None and tenant != tenant_id:
                continue
            period = period_key(b.period)
            out.append({**b.__dict__, "tenant": tenant, "period_key": period, "spent_usd": self.spent(b, period)})
        return out

    def reconcile(self) -> int:
        """Forget the in-flight reservations and spend counters kept for budgets (the next request re-seeds them
        from the usage records). For when no gateway is running, after one was killed mid-request."""
        with self.engine.begin() as c:
            return int(c.execute(budget_usage.delete()).rowcount)

    def budgets_for(self, key: KeyInfo) -> list[Budget]:
        with self.engine.connect() as c:
            rows = c.execute(
                select(budgets)
                .where(
                    ((budgets.c.scope == "tenant") & (budgets.c.scope_id == key.tenant_id))
                    | ((budgets.c.scope == "key") & (budgets.c.scope_id == key.key_id))
                )
                .order_by(budgets.c.id)  # one order for every request: concurrent reservations cannot deadlock
            ).mappings()
            return [
                Budget(r["id"], r["scope"], r["scope_id"], r["period"], r["limit_usd"], bool(r["hard"])) for r in rows
            ]

    def spent(self, budget: Budget, period: str) -> float:
        """What the usage records of the budget's scope cost in `period` (the durable truth)."""
        start, end = period_bounds(period)
        column = usage_records.c.tenant_id if budget.scope == "tenant" else usage_records.c.key_id
        with self.engine.connect() as c:
            return float(
                c.execute(
                    select(func.coalesce(func.sum(usage_records.c.cost_usd), 0.0)).where(
                        column == budget.scope_id, usage_records.c.created >= start, usage_records.c.created < end
                    )
                ).scalar()
                or 0.0
            )

    def reserve_sql(self, items: Sequence[tuple[Budget, str, float]]) -> list[Budget] | None:
        """Reserve `amount` on every (budget, period) in one transaction; each hard budget by a conditional
        UPDATE (the row lock makes it atomic under concurrency), all or none. None when a hard budget refuses,
        else the soft budgets the reservation takes over their limit."""
        passed: list[Budget] = []
        with self.engine.begin() as c:
            for budget, period, amount in items:
                where = (budget_usage.c.budget_id == budget.id, budget_usage.c.period_key == period)
                if c.execute(select(budget_usage.c.budget_id).where(*where)).first() is None:
                    # the period's first request: start from what the ledger says was spent
                    c.execute(
                        self._insert(budget_usage)
                        .values(budget_id=budget.id, period_key=period, reserved=0.0, spent=self.spent(budget, period))
                        .on_conflict_do_nothing()
                    )
                cond = update(budget_usage).where(
                    budget_usage.c.budget_id == budget.id, budget_usage.c.period_key == period
                )
                if budget.hard:
                    cond = cond.where(budget_usage.c.spent + budget_usage.c.reserved + amount <= budget.limit_usd)
                if c.execute(cond.values(reserved=budget_usage.c.reserved + amount)).rowcount != 1:
                    c.rollback()
                    return None
                if not budget.hard:
                    used = c.execute(
                        select(budget_usage.c.spent + budget_usage.c.reserved).where(
                            budget_usage.c.budget_id == budget.id, budget_usage.c.period_key == period
                        )
                    ).scalar()
                    if used is not None and used > budget.limit_usd:
                        passed.append(budget)
        return passed

    def settle_sql(self, items: Sequence[tuple[Budget, str, float]], actual: float) -> None:
        with self.engine.begin() as c:
            for budget, period, amount in items:
                c.execute(
                    update(budget_usage)
                    .where(budget_usage.c.budget_id == budget.id, budget_usage.c.period_key == period)
                    .values(reserved=budget_usage.c.reserved - amount, spent=budget_usage.c.spent + actual)
                )

    # --- usage ----------------------------------------------------------------------------------------------
    def write(self, records: Iterable[UsageRecord]) -> int:
        """Insert records, ignoring any request id already present (idempotent replays)."""
        rows = [r.row() for r in records]
        if not rows:
            return 0
        for row in rows:  # the driver's own executemany, without SQLAlchemy's per-row work (the gateway's hot path)
            row["label"] = None if row["label"] is None else json.dumps(row["label"])
        with self.engine.begin() as c:
            c.exec_driver_sql(self._insert_records, rows)
        return len(rows)

    def records(self, tenant_id: str, since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
        """The tenant's usage records in [since, until), oldest first."""
        query = select(usage_records).where(usage_records.c.tenant_id == tenant_id, usage_records.c.created >= since)
        if until != float("inf"):
            query = query.where(usage_records.c.created < until)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(query.order_by(usage_records.c.created)).mappings()]

    def usage(
        self, tenant_id: str, since: float = 0.0, group_by: str = "model", until: float = float("inf")
    ) -> list[dict[str, Any]]:
        """The tenant's requests, tokens, cost, energy and carbon in [since, until), per model, backend or day
        (the costliest first; days in order)."""
        if group_by not in GROUP_BY:
            raise LedgerError(f"group by {group_by!r}: choose {', '.join(GROUP_BY)}.{did_you_mean(group_by, GROUP_BY)}")
        u = usage_records.c
        # summed in the database: a tenant may have millions of records
        group: ColumnElement[Any]
        if group_by == "day":  # whole UTC days since 1970 (SQLite's CAST truncates; PostgreSQL's rounds)
            days = u.created / 86400
            group = func.floor(days) if self.dialect == "postgresql" else cast(days, Integer)
        else:
            group = u[group_by]
        query = (
            select(
                group.label("group"),
                func.count().label("requests"),
                func.sum(case((u.status >= 400, 1), else_=0)).label("errors"),
                func.sum(u.prompt_tokens).label("prompt_tokens"),
                func.sum(u.completion_tokens).label("completion_tokens"),
                func.sum(u.cost_usd).label("cost_usd"),
                func.coalesce(func.sum(u.energy_wh), 0.0).label("energy_wh"),  # of the records that know it
                func.coalesce(func.sum(u.co2e_g), 0.0).label("co2e_g"),
                *_unknown(u.energy_wh, u.cost_usd, "energy"),  # NULL is unknown: counted apart, never as 0
                *_unknown(u.co2e_g, u.cost_usd, "co2e"),
            )
            .where(u.tenant_id == tenant_id, u.created >= since)
            .group_by(group)
        )
        if until != float("inf"):
            query = query.where(u.created < until)
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(query).mappings()]
        out = []
        for r in rows:
            key = r.pop("group")
            if group_by == "day":
                label = datetime.fromtimestamp(int(key) * 86400, tz=UTC).strftime("%Y-%m-%d")
            else:
                label = str(key or "none")
            out.append({group_by: label, **{f: r[f] for f in _TOTALS}})
        return sorted(out, key=lambda g: g["day"]) if group_by == "day" else sorted(out, key=lambda g: -g["cost_usd"])

    def tenants(self) -> list[str]:
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(select(tenants.c.id).order_by(tenants.c.id))]

    def request_ids(self) -> list[str]:
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(select(usage_records.c.request_id))]


def _unknown(column: Any, cost: Any, name: str) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """How many records leave `column` unknown (NULL), and what they cost."""
    return (
        func.coalesce(func.sum(case((column.is_(None), 1), else_=0)), 0).label(f"{name}_unknown_requests"),
        func.coalesce(func.sum(case((column.is_(None), cost), else_=0.0)), 0.0).label(f"{name}_unknown_cost_usd"),
    )


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else f"{scheme}://{creds}@{host}"
    return url


def default_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'ledger.sqlite3'}"
