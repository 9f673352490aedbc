"""A tenant's monthly cost and carbon statement, from the usage records, in Markdown or HTML.

Energy and carbon are totals of the requests whose figures are known. A request whose record leaves them
unknown (a hosted API publishes neither; a failed request has no label) is counted apart, with its share of
the cost, and never summed as zero."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from flopex.errors import LedgerError, did_you_mean
from flopex.ledger._store import LedgerStore, period_bounds

__all__ = ["Statement", "amount", "build_statement", "known_part", "unknown_note"]

_NOTE = (
    "Energy and carbon are totals of the requests whose figures are known; requests with unknown energy or carbon "
    "(hosted APIs publish neither, and a failed request records neither) are counted apart, never as zero."
)


def amount(x: float) -> str:
    """A figure for people: two decimals for large values, four significant digits for small ones (a request
    costs millionths of a dollar), never a misleading 0.0000."""
    if x == 0:
        return "0"
    return f"{x:,.{max(2, 3 - math.floor(math.log10(abs(x))))}f}"


@dataclass(frozen=True)
class Statement:
    tenant: str
    month: str  # YYYY-MM
    totals: dict[str, Any]
    by_model: list[dict[str, Any]]
    by_backend: list[dict[str, Any]]
    by_day: list[dict[str, Any]]
    budgets: list[dict[str, Any]]

    def markdown(self) -> str:
        t = self.totals
        lines = [
            f"# flopex statement: {self.tenant}, {self.month}",
            "",
            f"- Requests: {t['requests']:,} ({t['errors']:,} failed)",
            f"- Tokens: {t['prompt_tokens']:,} in, {t['completion_tokens']:,} out",
            f"- Cost: ${amount(t['cost_usd'])}",
            f"- Energy: {_total(t, 'energy', 'energy_wh', 'kWh')}",
            f"- Carbon: {_total(t, 'co2e', 'co2e_g', 'kgCO2e')}",
            "",
            _NOTE,
        ]
        for title, group, rows in self._sections():
            lines += ["", f"## {title}", "", _md_row([group, *_HEADERS]), _md_row(["---"] * (len(_HEADERS) + 1))]
            lines += [_md_row([r[group], *_cells(r)]) for r in rows]
        if self.budgets:
            lines += ["", "## Budgets", "", _md_row(_BUDGET_HEADERS), _md_row(["---"] * len(_BUDGET_HEADERS))]
            lines += [_md_row(_budget_cells(b)) for b in self.budgets]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        t = self.totals
        esc = html.escape
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>flopex statement: {esc(self.tenant)}, {self.month}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}"
            "table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd}"
            "td.n{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>",
            f"<h1>flopex statement: {esc(self.tenant)}, {self.month}</h1>",
            "<ul>",
            f"<li>Requests: {t['requests']:,} ({t['errors']:,} failed)</li>",
            f"<li>Tokens: {t['prompt_tokens']:,} in, {t['completion_tokens']:,} out</li>",
            f"<li>Cost: ${amount(t['cost_usd'])}</li>",
            f"<li>Energy: {esc(_total(t, 'energy', 'energy_wh', 'kWh'))}</li>",
            f"<li>Carbon: {esc(_total(t, 'co2e', 'co2e_g', 'kgCO2e'))}</li>",
            "</ul>",
            f"<p>{esc(_NOTE)}</p>",
        ]
        for title, group, rows in self._sections():
            parts.append(f"<h2>{title}</h2>")
            parts.append(_html_table([group, *_HEADERS], [[str(r[group]), *_cells(r)] for r in rows]))
        if self.budgets:
            parts.append("<h2>Budgets</h2>")
            parts.append(_html_table(_BUDGET_HEADERS, [_budget_cells(b) for b in self.budgets]))
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    def _sections(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        return [("By model", "model", self.by_model), ("By backend", "backend", self.by_backend),
                ("By day", "day", self.by_day)]  # fmt: skip


_HEADERS = ["requests", "tokens in", "tokens out", "cost (USD)", "energy (kWh)", "carbon (kgCO2e)"]
_BUDGET_HEADERS = ["scope", "id", "period", "limit (USD)", "kind", "spent this period (USD)"]


def known_part(value: float, unknown: int, requests: int) -> str:
    """A total of what is known, for a table cell: "unknown" where no request knows it, else the known total
    and, where some requests do not know it, how many ("1.25 + 3 unknown")."""
    if requests and unknown >= requests:
        return "unknown"
    return amount(value) + (f" + {unknown:,} unknown" if unknown else "")


def unknown_note(unknown: int, unknown_cost: float, cost: float, what: str) -> str:
    """ "3 requests (40% of cost) with unknown energy, not included" (empty where nothing is unknown)."""
    if not unknown:
        return ""
    share = f" ({unknown_cost / cost:.0%} of cost)" if cost > 0 else ""
    return f"{unknown:,} request{'s' if unknown != 1 else ''}{share} with unknown {what}, not included"


def _total(t: dict[str, Any], name: str, field: str, unit: str) -> str:
    """The known total in `unit` (kWh or kgCO2e, from Wh or g), then what is left out and why."""
    n, requests = t[f"{name}_unknown_requests"], t["requests"]
    what = {"energy": "energy", "co2e": "carbon"}[name]
    if requests and n >= requests:
        return f"unknown (none of the {requests:,} requests has a known {what})"
    note = unknown_note(n, t[f"{name}_unknown_cost_usd"], t["cost_usd"], what)
    return f"{amount(t[field] / 1000)} {unit}" + (f", plus {note}" if note else "")


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['requests']:,}",
        f"{r['prompt_tokens']:,}",
        f"{r['completion_tokens']:,}",
        amount(r["cost_usd"]),
        known_part(r["energy_wh"] / 1000, r["energy_unknown_requests"], r["requests"]),
        known_part(r["co2e_g"] / 1000, r["co2e_unknown_requests"], r["requests"]),
    ]


def _budget_cells(b: dict[str, Any]) -> list[str]:
    kind = "hard" if b["hard"] else "soft"
    return [b["scope"], b["scope_id"], b["period"], amount(b["limit_usd"]), kind, amount(b["spent_usd"])]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i else ''}>{html.escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_statement(store: LedgerStore, tenant: str, month: str) -> Statement:
    """The statement of `tenant` for `month` (YYYY-MM, UTC)."""
    known = store.tenants()
    if tenant not in known:
        raise LedgerError(f"no tenant {tenant!r} in the ledger.{did_you_mean(tenant, known)}")
    try:
        if len(month) != 7:
            raise ValueError(month)
        start, end = period_bounds(month)
    except ValueError:
        raise LedgerError(f"month {month!r}: write it as YYYY-MM, e.g. 2026-11.") from None
    by_model = store.usage(tenant, start, "model", end)
    totals: dict[str, Any] = {
        f: sum(r[f] for r in by_model)
        for f in (
            "requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "energy_wh", "co2e_g",
            "energy_unknown_requests", "energy_unknown_cost_usd", "co2e_unknown_requests", "co2e_unknown_cost_usd",
        )
    }  # fmt: skip
    return Statement(
        tenant,
        month,
        totals,
        by_model,
        store.usage(tenant, start, "backend", end),
        store.usage(tenant, start, "day", end),
        store.list_budgets(tenant),
    )
