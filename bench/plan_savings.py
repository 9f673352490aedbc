"""Savings of a heterogeneous fleet against single-GPU-type fleets, Mélange style, beside Mélange's bands.

Llama-2-7B on one-GPU L4, A10G, A100-80GB and H100 offers (the cheapest on-demand offer of each in the
shipped catalog), for a short-request (Chatbot Arena-like), a long-request (PubMed summarisation-like) and a
mixed (80/20) length distribution, at TPOT limits of 120 ms and 40 ms and several request rates. For each
case flopex plans the cheapest mix, then the cheapest fleet of each single type; the saving against a
baseline is 1 - mix / baseline. The length distributions are approximations of the datasets' shapes (Mélange
does not publish its bucket histograms); capacities come from flopex's performance model, not from
Mélange's profiles, so the figures are a side-by-side check of the method, not a reproduction.

    python bench/plan_savings.py
"""

from __future__ import annotations

import time
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from flopex.catalog import load_catalog
from flopex.economics import load_energy_table
from flopex.perf import load_efficiency
from flopex.plan import Options, PlanSpec, build_inputs, solve
from flopex.workloads import ChatWorkload, LengthBucket, TokenSlo, TokenTraffic

TYPES = ("L4", "A10G", "A100-SXM-80GB", "H100-SXM")
ARENA = [(32, 64, 0.25), (128, 128, 0.35), (256, 256, 0.25), (512, 512, 0.10), (1024, 256, 0.05)]
PUBMED = [(1000, 150, 0.20), (2000, 200, 0.35), (3000, 250, 0.30), (3600, 300, 0.15)]
MIXED = [(i, o, 0.8 * w) for i, o, w in ARENA] + [(i, o, 0.2 * w) for i, o, w in PUBMED]
DATASETS = {"Arena": ARENA, "PubMed": PUBMED, "Mixed": MIXED}
#: Mélange's published cost reductions against single-GPU-type baselines (reference/planning.md, section 2).
MELANGE = {("Arena", 0.12): "15-77%", ("Arena", 0.04): "9-68%", ("PubMed", 0.12): "15-33%",
           ("PubMed", 0.04): "2-22%", ("Mixed", 0.12): "13-51%", ("Mixed", 0.04): "4-51%"}  # fmt: skip
RATES = (1.0, 4.0, 16.0)


def main() -> None:
    catalog = load_catalog()
    eff, energy = load_efficiency(), load_energy_table()
    singles = []
    for acc in TYPES:
        offers = [
            o for o in catalog.offers if o.accelerator == acc and o.accelerator_count == 1 and o.market == "on_demand"
        ]
        singles.append(min(offers, key=lambda o: o.price_usd_per_hour))
    small = replace(catalog, offers=tuple(singles), hosted=())
    spec = PlanSpec(name="savings", workloads=["-"], utilisation=1.0)
    table = Table(title="Llama-2-7B: heterogeneous fleet against single-type fleets (1-GPU offers, utilisation 100%)")
    for col in ("dataset", "TPOT", "req/s", "mix $/h", "mix", *[f"{t} only" for t in TYPES], "saving range", "Mélange"):
        table.add_column(col, justify="left" if col in ("dataset", "mix") else "right", overflow="fold")
    start = time.perf_counter()
    for name, buckets in DATASETS.items():
        for tpot in (0.12, 0.04):
            for rate in RATES:
                w = ChatWorkload(
                    name=f"{name}-{tpot}-{rate}", kind="chat", model="llama-2-7b", precisions=("bf16",),
                    traffic=TokenTraffic(requests_per_s=rate, lengths=tuple(
                        LengthBucket(input_tokens=i, output_tokens=o, weight=p) for i, o, p in buckets)),
                    slo=TokenSlo(ttft_p99_s=30.0, tpot_p99_s=tpot),
                )  # fmt: skip
                inputs = build_inputs([w], small, eff, energy, spec)
                options = Options(utilisation=1.0, mip_gap=1e-4, time_limit_s=20)
                mix = solve(inputs.candidates, inputs.demands, options)
                if not mix.feasible:
                    table.add_row(name, f"{tpot * 1e3:.0f} ms", f"{rate:g}", "infeasible", *["-"] * (len(TYPES) + 3))
                    continue
                costs = []
                for acc in TYPES:
                    only = [c for c in inputs.candidates if c.label.startswith(acc + " ")]
                    s = solve(only, inputs.demands, options)
                    costs.append(s.usd_per_hour if s.feasible else None)
                used = sorted({c.split("|")[1].split("/")[2] for c in mix.groups})
                savings = [1 - mix.usd_per_hour / c for c in costs if c]
                table.add_row(
                    name, f"{tpot * 1e3:.0f} ms", f"{rate:g}", f"{mix.usd_per_hour:,.2f}", "+".join(used),
                    *[("-" if c is None else f"{c:,.2f}") for c in costs],
                    f"{min(savings):.0%}-{max(savings):.0%}" if savings else "-", MELANGE[(name, tpot)],
                )  # fmt: skip
    Console(width=200).print(table)
    Console().print(f"{len(DATASETS) * 2 * len(RATES)} cases in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
