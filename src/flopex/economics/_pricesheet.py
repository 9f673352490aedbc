"""Tiered price sheets: what a broker would publish for a model, per 1M input and output tokens, by context
length, latency class and committed throughput, each from the cheapest configuration that serves the tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flopex.catalog import Catalog
from flopex.economics._energy import EnergyTable
from flopex.economics._quote import QuoteRow, quote
from flopex.errors import EconomicsError
from flopex.models import resolve_model
from flopex.perf import SCENARIO_SLOS, Efficiency
from flopex.workloads import ChatWorkload, TokenSlo, TokenTraffic

__all__ = ["CONTEXT_TIERS", "COMMIT_TIERS", "LATENCY_CLASSES", "PriceRow", "PriceSheet", "price_sheet"]

CONTEXT_TIERS: tuple[int, ...] = (8192, 32768, 131072)
#: Committed output throughput tiers, tokens per second (about 4M, 43M and 432M output tokens a day).
COMMIT_TIERS: tuple[float, ...] = (50.0, 500.0, 5000.0)
#: Latency classes: batch has no latency limit; standard and interactive are DESIGN.md's server and
#: interactive SLOs (p99 TTFT, p99 TPOT).
LATENCY_CLASSES: dict[str, TokenSlo] = {
    "batch": TokenSlo(),
    "standard": TokenSlo(ttft_p99_s=SCENARIO_SLOS["server"][0], tpot_p99_s=SCENARIO_SLOS["server"][1]),
    "interactive": TokenSlo(ttft_p99_s=SCENARIO_SLOS["interactive"][0], tpot_p99_s=SCENARIO_SLOS["interactive"][1]),
}


@dataclass(frozen=True)
class PriceRow:
    tier: str
    context_tokens: int
    latency_class: str
    committed_output_tokens_per_s: float
    row: QuoteRow | None
    margin: float
    note: str = ""

    def _price(self, cost: float | None) -> float | None:
        return None if cost is None else cost * (1 + self.margin)

    @property
    def usd_per_mtok_input(self) -> float | None:
        return None if self.row is None else self._price(self.row.usd_per_mtok_input)

    @property
    def usd_per_mtok_output(self) -> float | None:
        return None if self.row is None else self._price(self.row.usd_per_mtok_output)

    @property
    def hardware(self) -> str:
        r = self.row
        if r is None:
            return self.note
        return f"{r.instances} x {r.instance_type} ({r.accelerator}, {r.precision}, TP{r.tensor_parallel}) {r.offer_id}"

    def to_json(self) -> dict[str, Any]:
        r = self.row
        return {
            "tier": self.tier,
            "context_tokens": self.context_tokens,
            "latency_class": self.latency_class,
            "committed_output_tokens_per_s": self.committed_output_tokens_per_s,
            "usd_per_mtok_input": self.usd_per_mtok_input,
            "usd_per_mtok_output": self.usd_per_mtok_output,
            "cost_usd_per_mtok_input": None if r is None else r.usd_per_mtok_input,
            "cost_usd_per_mtok_output": None if r is None else r.usd_per_mtok_output,
            "offer": None if r is None else r.offer_id,
            "hardware": self.hardware,
            "note": self.note,
        }


@dataclass(frozen=True)
class PriceSheet:
    model: str
    margin: float
    output_tokens: int
    rows: tuple[PriceRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "margin": self.margin,
            "output_tokens_per_request": self.output_tokens,
            "latency_classes": {
                k: {"ttft_p99_s": v.ttft_p99_s, "tpot_p99_s": v.tpot_p99_s} for k, v in LATENCY_CLASSES.items()
            },
            "rows": [r.to_json() for r in self.rows],
        }

    def to_markdown(self) -> str:
        head = (
            f"# Price sheet: {self.model}\n\nUSD per 1M tokens, cost plus a {self.margin:.0%} margin. Each tier is "
            f"priced on the cheapest configuration that serves it ({self.output_tokens} output tokens per request; "
            "a context tier is priced at its full length).\n\n"
            "| tier | context | latency | committed out tok/s | $/1M input | $/1M output | hardware |\n"
            "|---|---:|---|---:|---:|---:|---|\n"
        )
        body = "".join(
            f"| {r.tier} | {r.context_tokens:,} | {r.latency_class} | {r.committed_output_tokens_per_s:,.0f} | "
            f"{_money(r.usd_per_mtok_input)} | {_money(r.usd_per_mtok_output)} | {r.hardware} |\n"
            for r in self.rows
        )
        return head + body


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.3f}"


def price_sheet(
    base: ChatWorkload, catalog: Catalog, eff: Efficiency, energy: EnergyTable, margin: float
) -> PriceSheet:
    """Context tiers (up to 8k, 32k, 128k) at each latency class, then committed-throughput tiers at the
    standard class and the smallest context tier. The workload gives the model, precisions, constraints and
    the output length; the traffic of a context or latency row is the workload's own output-token rate."""
    if margin < 0:
        raise EconomicsError(f"--margin {margin}: a margin is a fraction at least 0, e.g. 0.25 for 25%.")
    model = resolve_model(base.model)
    _, mean_out = base.traffic.mean_lengths()
    out = max(1, round(mean_out))
    rate = base.traffic.requests_per_s or 1.0
    rows: list[PriceRow] = []

    def cell(tier: str, context: int, latency: str, out_per_s: float) -> PriceRow:
        if context > model.max_context:
            return PriceRow(
                tier, context, latency, out_per_s, None, margin, f"{model.id} reads at most {model.max_context:,}"
            )
        traffic = TokenTraffic(requests_per_s=out_per_s / out, input_tokens=context - out, output_tokens=out)
        w = base.model_copy(update={"traffic": traffic, "slo": LATENCY_CLASSES[latency], "name": f"{base.name}-{tier}"})
        q = quote(w, catalog, eff, energy)
        best = next((r for r in q.rows if r.source == "offer" and r.eligible and r.slo_met), None)
        return PriceRow(tier, context, latency, out_per_s, best, margin, "" if best else "no offer meets this tier")

    for context in CONTEXT_TIERS:
        for latency in LATENCY_CLASSES:
            rows.append(cell(f"context {context // 1024}k", context, latency, rate * out))
    for commit in COMMIT_TIERS:
        rows.append(cell(f"commit {commit:,.0f} tok/s", CONTEXT_TIERS[0], "standard", commit))
    return PriceSheet(model.id, margin, out, tuple(rows))
