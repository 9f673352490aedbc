"""How the planner's MILP scales: offers x buckets x workloads, solved to a 1% gap, time and gap printed.

Offers are synthetic but shaped like a real catalog: a few dozen instance shapes (accelerator, count,
configuration) sold by many providers in many regions at different prices, on demand and spot. Each
workload has its own capacity per bucket on each shape. Every workload must run in two regions and keep
30% of every bucket off spot; no zone may carry more than half a workload's spot traffic. The carbon rows
add power per shape and a grid per region, and cap the fleet's carbon at 70% of what the cheapest fleet
emits (without the domain and spot rules): one cap shared by all workloads, so they are solved together.

    python bench/plan_scale.py [--max-offers 4000] [--time-limit S] [--check S] [--rows 1,2]

With no --time-limit each solve gets the planner's default limit (it grows with the model); --check S
solves every row again with S seconds and prints how much dearer the first plan was than that one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from rich.console import Console
from rich.table import Table

from flopex.plan import Candidate, Demand, Options, Solution, solve

#: (offers, buckets, workloads, carbon-capped)
SIZES = [(100, 10, 2, False), (500, 20, 3, False), (1000, 40, 5, False), (2000, 40, 5, False),
         (4000, 40, 5, False), (250, 10, 3, True), (500, 10, 3, True), (1000, 10, 3, True)]  # fmt: skip


def problem(
    offers: int, buckets: int, workloads: int, seed: int = 7, power: bool = False
) -> tuple[list[Candidate], list[Demand]]:
    rng = np.random.default_rng(seed)
    shapes = 24
    shape_speed = rng.uniform(0.5, 8.0, shapes)  # requests/s per group on a reference bucket
    shape_price = shape_speed * rng.uniform(0.6, 1.4, shapes)  # $/h, roughly in line with speed
    providers = [f"p{i}" for i in range(20)]
    regions = [f"r{i}" for i in range(50)]
    energy = np.random.default_rng(seed + 1)  # its own stream: the rows without carbon stay what they were
    shape_kw = shape_speed * energy.uniform(0.3, 0.6, shapes)  # facility kW at full load
    grid = energy.uniform(20, 700, len(regions))  # gCO2e/kWh
    offer_rows = []
    for o in range(offers):
        shape = int(rng.integers(shapes))
        provider = providers[int(rng.integers(len(providers)))]
        region = int(rng.integers(len(regions)))
        spot = bool(rng.random() < 0.3)
        price = shape_price[shape] * rng.uniform(0.7, 1.6) * (0.4 if spot else 1.0)
        offer_rows.append((o, shape, provider, region, spot, price))
    # bucket difficulty per workload and shape: long prompts favour some shapes, short ones others
    affinity = rng.uniform(0.5, 1.5, (workloads, shapes, buckets))
    size = np.linspace(0.2, 3.0, buckets)
    candidates = []
    for w in range(workloads):
        for o, shape, provider, region, spot, price in offer_rows:
            caps = tuple(float(shape_speed[shape] * affinity[w, shape, b] / size[b]) for b in range(buckets))
            kw = float(shape_kw[shape]) if power else 0.0
            candidates.append(
                Candidate(
                    id=f"w{w}|o{o}",
                    workload=f"w{w}",
                    offer=f"o{o}",
                    label=f"shape{shape}",
                    usd_per_hour=float(price),
                    capacity=caps,
                    spot=spot,
                    zone=f"{provider}/r{region}/a",
                    region=f"r{region}",
                    provider=provider,
                    site=f"{provider}/r{region}",
                    idle_kw=0.4 * kw,
                    busy_kw=kw,
                    grid_g_per_kwh=float(grid[region]) if power else 0.0,
                    interruption_rate=0.05 if spot else 0.0,
                )  # fmt: skip
            )
    demands = []
    for w in range(workloads):
        weights = rng.dirichlet(np.ones(buckets))
        total = float(rng.uniform(20, 200))
        demands.append(Demand(f"w{w}", tuple(float(total * p) for p in weights), tuple(str(b) for b in range(buckets))))
    return candidates, demands


def _options(demands: list[Demand], time_limit: float | None) -> Options:
    return Options(utilisation=0.85, min_domains={d.workload: 2 for d in demands}, on_demand_floor=0.3,
                   max_zone_share=0.5, time_limit_s=time_limit, mip_gap=0.01)  # fmt: skip


def case(
    offers: int, buckets: int, workloads: int, capped: bool, time_limit: float | None
) -> tuple[list[Candidate], list[Demand], Options]:
    candidates, demands = problem(offers, buckets, workloads, power=capped)
    options = _options(demands, time_limit)
    if capped:  # 70% of what the cheapest fleet emits without the domain and spot rules (a quick, exact solve)
        quick = Options(utilisation=0.85, carbon_cap_g_per_hour=1e12, mip_gap=0.02, time_limit_s=120)
        free = solve(candidates, demands, quick)
        options = replace(options, carbon_cap_g_per_hour=0.7 * free.carbon_g_per_hour)
    return candidates, demands, options


def _gap(s: Solution) -> str:
    return "-" if not s.feasible else "unknown" if s.gap is None else f"{s.gap:.2%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-offers", type=int, default=4000)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; default: the planner's own")
    parser.add_argument("--check", type=float, default=None, help="re-solve with this limit and compare")
    parser.add_argument("--rows", default=None, help="only these rows, numbered from 1 (e.g. 5,6)")
    args = parser.parse_args()
    rows = None if args.rows is None else {int(r) for r in args.rows.split(",")}
    table = Table(title="flopex plan: MILP size and solve time (HiGHS via scipy.optimize.milp, 2 domains, spot rules)")
    for col in ("offers", "buckets", "workloads", "carbon cap kg/h", "candidates", "after pruning (int vars)",
                "continuous", "rows", "limit s", "seconds", "gap", "status", "$/h"):  # fmt: skip
        table.add_column(col, justify="right")
    if args.check:
        table.add_column(f"$/h in {args.check:g} s", justify="right")
        table.add_column("dearer by", justify="right")
    for number, (offers, buckets, workloads, capped) in enumerate(SIZES, start=1):
        if offers > args.max_offers or (rows is not None and number not in rows):
            continue
        candidates, demands, options = case(offers, buckets, workloads, capped, args.time_limit)
        start = time.perf_counter()
        s = solve(candidates, demands, options)
        elapsed = time.perf_counter() - start
        cap = options.carbon_cap_g_per_hour
        row = [f"{offers:,}", str(buckets), str(workloads), "-" if cap is None else f"{cap / 1000:,.1f}",
               f"{len(candidates):,}",
               f"{s.size[0]:,}", f"{s.size[1]:,}", f"{s.size[2]:,}", f"{s.time_limit_s:.0f}", f"{elapsed:.2f}",
               _gap(s), s.status, f"{s.usd_per_hour:,.2f}" if s.feasible else "-"]  # fmt: skip
        if args.check:
            long = solve(candidates, demands, replace(options, time_limit_s=args.check))
            better = long.usd_per_hour if long.feasible else None
            row += ["-" if better is None else f"{better:,.2f}",
                    "-" if better is None or not s.feasible else f"{s.usd_per_hour / better - 1:+.1%}"]  # fmt: skip
        table.add_row(*row)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
