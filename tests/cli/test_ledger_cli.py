"""`flopex keys`, `budgets`, `usage` and `statement` on the ledger the gateway writes."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from flopex.cli import app
from flopex.ledger import LedgerStore, UsageRecord

runner = CliRunner()


def run(db: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--database-url", db], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def seed(db: str) -> None:
    store = LedgerStore(db)
    store.migrate()
    nov = datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp()
    rows = [("a1", "acme", "m1", "h100", 0.5, nov), ("a2", "acme", "m2", "l4", 0.25, nov + 86400),
            ("a3", "acme", "m1", "h100", 4.0, nov - 30 * 86400), ("b1", "beta", "m1", "h100", 9.0, nov)]  # fmt: skip
    for _, tenant, *_ in rows:
        store.create_tenant(tenant)
    store.write(
        UsageRecord(rid, tenant, "k", model, backend, None, 100, 50, cost, 2.0, 1.0, None, 0.1, 0.5, 200, at)
        for rid, tenant, model, backend, cost, at in rows
    )


def test_a_key_is_printed_once_and_works(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    code, out, err = run(db, "keys", "create", "acme", "--model", "llama-3.1-8b", "--rpm", "60", "--name", "ci")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("fpx_") and "shown this once" in err
    info = LedgerStore(db).authenticate(token)
    assert info is not None and info.rpm == 60 and info.scopes["models"] == ["llama-3.1-8b"]
    code, out, _ = run(db, "keys", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["id"] == info.key_id and listed["name"] == "ci" and token.split("_", 2)[2] not in out
    assert run(db, "keys", "revoke", info.key_id)[0] == 0
    assert LedgerStore(db).authenticate(token) is None
    code, _, err = run(db, "keys", "revoke", info.key_id[:-1] + "z")
    assert code == 2 and "Did you mean" in err


def test_bad_flags_name_the_fix(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    assert "Did you mean 'batch'" in run(db, "keys", "create", "acme", "--tier", "bach")[2]
    run(db, "keys", "create", "acme")
    assert "Did you mean 'acme'" in run(db, "budgets", "set", "--tenant", "acm", "--usd", "5")[2]
    assert "exactly one of --tenant or --key" in run(db, "budgets", "set", "--usd", "5")[2]
    assert "Did you mean 'day'" in run(db, "budgets", "set", "--tenant", "acme", "--usd", "5", "--period", "dy")[2]
    assert "span (7d, 12h)" in run(db, "usage", "--tenant", "acme", "--since", "last week")[2]
    assert "--database-url" in run("nosuchdb://x", "keys", "list")[2]


def test_budgets_show_what_was_spent(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    store = LedgerStore(db)
    store.migrate()
    store.create_tenant("acme")
    store.write(
        UsageRecord(rid, "acme", "k", "m1", None, None, 1, 1, cost, None, None, None, None, None, 200, at)
        for rid, cost, at in (("now", 1.25, time.time()), ("before", 3.0, time.time() - 40 * 86400))
    )
    assert run(db, "budgets", "set", "--tenant", "acme", "--usd", "10", "--period", "month", "--soft")[0] == 0
    code, out, _ = run(db, "budgets", "list", "--json")
    (b,) = json.loads(out)
    assert (b["tenant"], b["hard"], b["limit_usd"]) == ("acme", False, 10.0)
    assert b["spent_usd"] == 1.25  # this month's records only


def test_usage_groups_and_exports(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    seed(db)
    args = ("usage", "--tenant", "acme", "--since", "2026-11-01", "--until", "2026-12-01")
    code, out, err = run(db, *args, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["model"], float(r["cost_usd"])) for r in rows] == [("m1", 0.5), ("m2", 0.25)]  # beta's are not here
    code, out, _ = run(db, *args, "--group-by", "day", "--format", "json")
    assert [(d["day"], d["requests"]) for d in json.loads(out)["data"]] == [("2026-11-10", 1), ("2026-11-11", 1)]
    code, out, _ = run(db, *args, "--group-by", "backend")
    assert "h100" in out and "l4" in out and "0.7500" in out  # the table's total
    assert "Did you mean 'acme'" in run(db, "usage", "--tenant", "acm")[2]


def test_a_monthly_statement(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    seed(db)
    code, out, err = run(db, "statement", "--tenant", "acme", "--month", "2026-11")
    assert code == 0, err
    assert "# flopex statement: acme, 2026-11" in out and "Requests: 2 (0 failed)" in out and "Cost: $0.7500" in out
    assert "| m1 | 1 |" in out and "| 2026-11-11 | 1 |" in out
    page = tmp_path / "s.html"
    code, _, err = run(db, "statement", "--tenant", "acme", "--month", "2026-10", "--format", "html", "-o", str(page))
    assert code == 0, err
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "Cost: $4.000" in html and "<table>" in html
    assert "YYYY-MM" in run(db, "statement", "--tenant", "acme", "--month", "2026-11-01")[2]


def test_usage_counts_unknown_energy_apart_never_as_zero(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    seed(db)  # two records of acme in November with known energy (2 Wh each) and cost $0.75
    nov = datetime(2026, 11, 12, 12, tzinfo=UTC).timestamp()
    LedgerStore(db).write([UsageRecord("h1", "acme", "k", "m3", "groq", None, 1, 1, 0.25, None, None, None, None,
                                       None, 200, nov)])  # fmt: skip
    args = ("usage", "--tenant", "acme", "--since", "2026-11-01", "--until", "2026-12-01")
    code, out, err = run(db, *args)
    assert code == 0, err
    m3 = next(line for line in out.splitlines() if " m3 " in line)
    assert m3.count("unknown") == 2 and " 0 " not in m3.split("0.2500")[1]  # energy and carbon: unknown, not 0
    assert "4.000 + 1 unknown" in out  # the total: the known 4 Wh, and one request without
    assert "1 request (25% of cost) with unknown energy, not included (hosted APIs publish no energy" in out
    code, out, _ = run(db, *args, "--format", "csv")
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["m3"]["energy_unknown_requests"] == "1" and float(rows["m3"]["energy_unknown_cost_usd"]) == 0.25
    assert rows["m1"]["energy_unknown_requests"] == "0"
