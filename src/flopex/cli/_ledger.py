"""`flopex keys`, `flopex budgets`, `flopex usage` and `flopex statement`: the tenants' side of the ledger the
gateway writes (the same database: --database-url, $FLOPEX_DATABASE_URL, or SQLite in flopex's data folder)."""

from __future__ import annotations

import csv
import io
import json as jsonlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flopex.cli._common import JsonOption, choose, data_dir, err_console, fail, out_console, print_json
from flopex.errors import FlopexError, did_you_mean
from flopex.ledger import (
    GROUP_BY,
    TIERS,
    LedgerStore,
    amount,
    build_statement,
    default_url,
    known_part,
    reconcile_redis,
    unknown_note,
)

__all__ = ["budgets_app", "keys_app", "statement_command", "usage_command"]

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="FLOPEX_DATABASE_URL",
        help="The ledger's SQLAlchemy URL (postgresql+psycopg://user@host/db); default: SQLite in the data folder.",
    ),
]
TenantOption = Annotated[str, typer.Option("--tenant", "-t", help="The tenant id.")]

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
budgets_app = typer.Typer(help="Budgets in USD per day or month, per tenant or key.", no_args_is_help=True)


def open_store(url: str | None) -> LedgerStore:
    """The ledger at `url` (default SQLite), migrated to the newest schema."""
    try:
        store = LedgerStore(url or default_url(data_dir()))
        store.migrate()
    except FlopexError as exc:
        fail(str(exc))
    except Exception as exc:  # a URL SQLAlchemy cannot parse, a driver that is not installed
        fail(f"--database-url: {exc}")
    return store


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Argument(help="The tenant the key belongs to (created if new).")],
    model: Annotated[
        list[str] | None, typer.Option("--model", help="A model it may call; repeatable. Default: all.")
    ] = None,
    jurisdiction: Annotated[
        list[str] | None, typer.Option("--jurisdiction", help="Where its data may go (EU, US, ...); repeatable.")
    ] = None,
    tier: Annotated[
        str, typer.Option(help="SLO tier: interactive, or batch (turned away first under load).")
    ] = "interactive",
    rpm: Annotated[int | None, typer.Option(help="Requests per minute (default: no limit).")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute (default: no limit).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May call the gateway's admin API.")] = False,
    name: Annotated[str | None, typer.Option(help="A name to tell keys apart.")] = None,
    database_url: DatabaseOption = None,
    json: JsonOption = False,
) -> None:
    """Create an API key. The key is printed once and never stored: keep it now."""
    store = open_store(database_url)
    try:
        key_id, token = store.create_key(
            tenant, models=model or (), jurisdictions=jurisdiction or (), tier=choose(tier, TIERS, "--tier"),
            rpm=rpm, tpm=tpm, admin=admin, name=name,
        )  # fmt: skip
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json({"id": key_id, "tenant": tenant, "key": token})
        return
    err_console().print(f"key {key_id} for tenant {tenant}; it is shown this once, store it now:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's keys.")] = None,
    database_url: DatabaseOption = None,
    json: JsonOption = False,
) -> None:
    """List keys (never the keys themselves: they are not stored)."""
    rows = open_store(database_url).list_keys(tenant)
    if json:
        print_json(rows)
        return
    table = Table(title="API keys", title_style="bold")
    for column in ("id", "tenant", "name", "models", "jurisdictions", "tier", "rpm", "tpm", "admin", "state"):
        table.add_column(column)
    for r in rows:
        scopes = r["scopes"]
        table.add_row(
            r["id"], r["tenant_id"], r["name"] or "", ", ".join(scopes.get("models") or ["all"]),
            ", ".join(scopes.get("jurisdictions") or ["any"]), scopes.get("tier", "interactive"),
            str(r["rpm"] or "-"), str(r["tpm"] or "-"), "yes" if r["admin"] else "",
            "revoked" if r["revoked"] else "active",
        )  # fmt: skip
    out_console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (the part after fpx_, as `flopex keys list` shows).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key: gateways refuse it within 10 seconds (at once on the gateway whose admin API revoked it)."""
    store = open_store(database_url)
    if not store.revoke(key_id):
        known = [str(r["id"]) for r in store.list_keys()]
        fail(f"no key with id {key_id!r}.{did_you_mean(key_id, known)} `flopex keys list` shows them.")
    err_console().print(f"key {key_id} revoked")


@budgets_app.command("set")
def budgets_set(
    usd: Annotated[float, typer.Option("--usd", help="The limit in US dollars.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="The tenant's budget.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="One key's budget (its id).")] = None,
    period: Annotated[str, typer.Option(help="day or month (UTC).")] = "month",
    soft: Annotated[bool, typer.Option("--soft", help="Alert (log and response header) instead of refusing.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Set the budget of a tenant or a key for a day or a month; hard (402 when it would be passed) by default."""
    if (tenant is None) == (key is None):
        fail("name exactly one of --tenant or --key.")
    store = open_store(database_url)
    scope, scope_id = ("tenant", tenant) if tenant is not None else ("key", key)
    assert scope_id is not None
    try:
        store.set_budget(scope, scope_id, choose(period, ("day", "month"), "--period"), usd, hard=not soft)
    except FlopexError as exc:
        fail(str(exc))
    err_console().print(f"{scope} {scope_id}: {'soft' if soft else 'hard'} budget ${amount(usd)} per {period}")


@budgets_app.command("list")
def budgets_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Only this tenant's budgets.")] = None,
    database_url: DatabaseOption = None,
    json: JsonOption = False,
) -> None:
    """Budgets with what their current period has spent."""
    rows = open_store(database_url).list_budgets(tenant)
    if json:
        print_json(rows)
        return
    table = Table(title="Budgets", title_style="bold")
    for column in ("tenant", "scope", "id", "period", "limit (USD)", "kind", "spent (USD)", "used"):
        table.add_column(column, justify="right" if "USD" in column or column == "used" else "left")
    for r in rows:
        used = r["spent_usd"] / r["limit_usd"] if r["limit_usd"] else 0.0
        table.add_row(
            r["tenant"] or "", r["scope"], r["scope_id"], f"{r['period']} {r['period_key']}", amount(r["limit_usd"]),
            "hard" if r["hard"] else "soft", amount(r["spent_usd"]), f"{used:.0%}",
        )  # fmt: skip
    out_console().print(table)


@budgets_app.command("reconcile")
def budgets_reconcile(
    database_url: DatabaseOption = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", envvar="FLOPEX_REDIS_URL", help="Also Redis.")] = None,
) -> None:
    """Clear the budget counters (reservations held by a gateway that was killed mid-request); the next request
    re-seeds them from the usage records. Run it with no gateway serving."""
    rows = open_store(database_url).reconcile()
    cleared = reconcile_redis(redis_url) if redis_url else 0
    err_console().print(f"cleared {rows} counter row(s) in the database and {cleared} in Redis")


def parse_time(value: str, flag: str) -> float:
    """YYYY-MM-DD, an ISO 8601 time, or a span back from now (30m, 12h, 7d), in Unix seconds (UTC)."""
    span = re.fullmatch(r"(\d+(?:\.\d+)?)([mhd])", value.strip())
    if span:
        return time.time() - float(span[1]) * {"m": 60, "h": 3600, "d": 86400}[span[2]]
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{flag} {value!r}: write a date (2026-11-01), an ISO time (2026-11-01T09:00) or a span (7d, 12h).")
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def usage_command(
    tenant: TenantOption,
    since: Annotated[str, typer.Option(help="From: a date, ISO time or span back from now (7d).")] = "30d",
    until: Annotated[str | None, typer.Option(help="Until (default: now).")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="model, backend or day.")] = "model",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write CSV or JSON here.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """A tenant's requests, tokens, cost, energy and carbon, grouped by model, backend or day."""
    group = choose(group_by, GROUP_BY, "--group-by")
    kind = choose(fmt, ("table", "csv", "json"), "--format")
    store = open_store(database_url)
    known = store.tenants()
    if tenant not in known:
        fail(f"--tenant {tenant!r}: no such tenant in the ledger.{did_you_mean(tenant, known)}")
    start = parse_time(since, "--since")
    end = parse_time(until, "--until") if until else float("inf")
    rows = store.usage(tenant, start, group, end)
    if kind == "json":
        text = jsonlib.dumps({"tenant": tenant, "since": start, "group_by": group, "data": rows}, indent=2)
    elif kind == "csv":
        buffer = io.StringIO()
        fields = [group, "requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "energy_wh", "co2e_g",
                  "energy_unknown_requests", "energy_unknown_cost_usd", "co2e_unknown_requests",
                  "co2e_unknown_cost_usd"]  # fmt: skip
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        _usage_table(tenant, group, rows)
        return
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err_console().print(f"wrote {len(rows)} row(s) to {output}")
    else:
        typer.echo(text.rstrip("\n"))


def _usage_table(tenant: str, group: str, rows: list[dict[str, Any]]) -> None:
    """Energy and carbon are the known totals; a request whose record leaves them unknown is counted apart
    ("+ 3 unknown", or "unknown" where none knows them), never as zero, and a note under the table says what
    share of the cost those requests are."""
    table = Table(title=f"Usage of {tenant} by {group}", title_style="bold", show_footer=bool(rows))
    fields = ("requests", "cost_usd", "energy_wh", "co2e_g", "energy_unknown_requests", "energy_unknown_cost_usd",
              "co2e_unknown_requests", "co2e_unknown_cost_usd")  # fmt: skip
    t = {f: sum(float(r[f]) for r in rows) for f in fields}
    n = int(t["requests"])
    table.add_column(group, footer="total")
    table.add_column("requests", justify="right", footer=f"{n:,}")
    table.add_column("errors", justify="right")
    table.add_column("tokens in", justify="right")
    table.add_column("tokens out", justify="right")
    table.add_column("cost (USD)", justify="right", footer=amount(t["cost_usd"]))
    energy = known_part(t["energy_wh"], int(t["energy_unknown_requests"]), n)
    carbon = known_part(t["co2e_g"], int(t["co2e_unknown_requests"]), n)
    table.add_column("energy (Wh)", justify="right", footer=energy)
    table.add_column("carbon (gCO2e)", justify="right", footer=carbon)
    for r in rows:
        table.add_row(
            str(r[group]), f"{r['requests']:,}", f"{r['errors']:,}", f"{r['prompt_tokens']:,}",
            f"{r['completion_tokens']:,}", amount(r["cost_usd"]),
            known_part(r["energy_wh"], r["energy_unknown_requests"], r["requests"]),
            known_part(r["co2e_g"], r["co2e_unknown_requests"], r["requests"]),
        )  # fmt: skip
    console = out_console()
    console.print(table)
    for name, what in (("energy", "energy"), ("co2e", "carbon")):
        note = unknown_note(int(t[f"{name}_unknown_requests"]), t[f"{name}_unknown_cost_usd"], t["cost_usd"], what)
        if note:
            why = f"hosted APIs publish no {what}, and a failed request records none"
            console.print(f"{note[0].upper()}{note[1:]} ({why}).", highlight=False)


def statement_command(
    tenant: TenantOption,
    month: Annotated[str | None, typer.Option(help="YYYY-MM (UTC); default: this month.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown or html.")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the statement here.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """A tenant's monthly cost and carbon statement (Markdown or HTML)."""
    kind = choose(fmt, ("markdown", "html"), "--format")
    try:
        s = build_statement(open_store(database_url), tenant, month or datetime.now(UTC).strftime("%Y-%m"))
    except FlopexError as exc:
        fail(str(exc))
    text = s.markdown() if kind == "markdown" else s.html()
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err_console().print(f"wrote the {s.month} statement of {tenant} to {output}")
    else:
        typer.echo(text.rstrip("\n"))
