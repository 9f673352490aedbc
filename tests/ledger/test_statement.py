"""Statements count energy and carbon only where the usage records know them: a record with NULL energy or
carbon (a hosted API publishes neither) is counted apart with its share of the cost, never summed as zero."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flopex.ledger import LedgerStore, UsageRecord, build_statement, known_part, unknown_note

NOV = datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp()


def record(rid: str, cost: float, energy_wh: float | None, co2e_g: float | None, model: str = "m") -> UsageRecord:
    return UsageRecord(rid, "acme", "k", model, "b", None, 10, 20, cost, energy_wh, co2e_g, None, 0.1, 0.3, 200, NOV)


def seeded(store: LedgerStore, *records: UsageRecord) -> LedgerStore:
    store.create_tenant("acme")
    store.write(list(records))
    return store


def test_usage_counts_the_records_that_leave_energy_or_carbon_unknown(store: LedgerStore) -> None:
    seeded(
        store,
        record("gpu", 0.25, 2000.0, 500.0, model="self-hosted"),
        record("api1", 0.5, None, None, model="hosted"),
        record("api2", 0.25, None, None, model="hosted"),
        record("no-grid", 0.5, 1000.0, None, model="self-hosted"),  # energy known, carbon not
    )
    rows = {r["model"]: r for r in store.usage("acme", group_by="model")}
    hosted, own = rows["hosted"], rows["self-hosted"]
    assert (hosted["energy_unknown_requests"], hosted["energy_unknown_cost_usd"]) == (2, pytest.approx(0.75))
    assert (hosted["co2e_unknown_requests"], hosted["co2e_unknown_cost_usd"]) == (2, pytest.approx(0.75))
    assert (own["energy_unknown_requests"], own["co2e_unknown_requests"]) == (0, 1)
    assert own["co2e_unknown_cost_usd"] == pytest.approx(0.5)
    assert own["energy_wh"] == pytest.approx(3000.0) and own["co2e_g"] == pytest.approx(500.0)  # the known part


def test_a_statement_gives_known_totals_and_says_what_is_left_out(store: LedgerStore) -> None:
    seeded(store, record("gpu", 0.25, 2000.0, 500.0, model="self-hosted"), record("api", 0.75, None, None, "hosted"))
    s = build_statement(store, "acme", "2026-11")
    md = s.markdown()
    assert "- Energy: 2.000 kWh, plus 1 request (75% of cost) with unknown energy, not included" in md
    assert "- Carbon: 0.5000 kgCO2e, plus 1 request (75% of cost) with unknown carbon, not included" in md
    assert "count as zero" not in md and "never as zero" in md
    assert "| hosted | 1 | 10 | 20 | 0.7500 | unknown | unknown |" in md  # not 0
    assert "| self-hosted | 1 | 10 | 20 | 0.2500 | 2.000 | 0.5000 |" in md
    html = s.html()
    assert "<li>Energy: 2.000 kWh, plus 1 request (75% of cost) with unknown energy, not included</li>" in html
    assert "<td class=n>unknown</td>" in html


def test_a_statement_of_hosted_apis_only_has_no_energy_total(store: LedgerStore) -> None:
    seeded(store, record("a1", 0.5, None, None), record("a2", 0.5, None, None))
    md = build_statement(store, "acme", "2026-11").markdown()
    assert "- Energy: unknown (none of the 2 requests has a known energy)" in md
    assert "- Carbon: unknown (none of the 2 requests has a known carbon)" in md
    assert "kWh" not in md.split("## By model")[0]  # no "0 kWh" anywhere in the totals


def test_a_statement_where_everything_is_known_says_nothing_is_left_out(store: LedgerStore) -> None:
    seeded(store, record("gpu", 0.25, 2000.0, 500.0))
    md = build_statement(store, "acme", "2026-11").markdown()
    assert "- Energy: 2.000 kWh\n" in md and "not included" not in md


@pytest.mark.parametrize(
    ("value", "unknown", "requests", "cell"),
    [(1.5, 0, 3, "1.500"), (1.5, 1, 3, "1.500 + 1 unknown"), (0.0, 3, 3, "unknown"), (0.0, 0, 0, "0")],
)
def test_a_cell_shows_the_known_part_and_the_unknown_count(
    value: float, unknown: int, requests: int, cell: str
) -> None:
    assert known_part(value, unknown, requests) == cell


@pytest.mark.parametrize(
    ("unknown", "unknown_cost", "cost", "note"),
    [
        (0, 0.0, 1.0, ""),
        (1, 0.4, 1.0, "1 request (40% of cost) with unknown energy, not included"),
        (3, 0.0, 0.0, "3 requests with unknown energy, not included"),  # no cost to share out
    ],
)
def test_the_note_counts_requests_and_their_share_of_cost(
    unknown: int, unknown_cost: float, cost: float, note: str
) -> None:
    assert unknown_note(unknown, unknown_cost, cost, "energy") == note
