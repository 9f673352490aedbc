"""How the planner's MILP scales: offers x buckets x workloads, solved to a 1% gap, time and gap printed.

Offers are synthetic but shaped like a real catalog: a few dozen instance shapes (accelerator, count,
configuration) sold by many providers in many regions at different prices, on demand and spot. Each
workload has its own capacity per bucket on each shape. Every workload must run in two regions and keep
30% of every bucket off spot; no zone may carry more than half a workload's spot traffic.

    python bench/plan_scale.py [--max-offers 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from flopex.plan import Candidate, Demand, Options, solve


def problem(offers: int, buckets: int, workloads: int, seed: int = 7) -> tuple[list[Candidate], list[Demand]]:
    rng = np.random.default_rng(seed)
    shapes = 24
    shape_speed = rng.uniform(0.5, 8.0, shapes)  # requests/s per group on a reference bucket
    shape_price = shape_speed * rng.uniform(0.6, 1.4, shapes)  # $/h, roughly in line with speed
    providers = [f"p{i}" for i in range(20)]
    regions = [f"r{i}" for i in range(50)]
    offer_rows = []
    for o in range(offers):
        shape = int(rng.integers(shapes))
        provider = providers[int(rng.integers(len(providers)))]
        region = regions[int(rng.integers(len(regions)))]
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
            candidates.append(
                Candidate(
                    id=f"w{w}|o{o}",
                    workload=f"w{w}",
                    offer=f"o{o}",
                    label=f"shape{shape}",
                    usd_per_hour=float(price),
                    capacity=caps,
                    spot=spot,
                    zone=f"{provider}/{region}/a",
                    region=region,
                    provider=provider,
                    interruption_rate=0.05 if spot else 0.0,
                )  # fmt: skip
            )
    demands = []
    for w in range(workloads):
        weights = rng.dirichlet(np.ones(buckets))
        total = float(rng.uniform(20, 200))
        demands.append(Demand(f"w{w}", tuple(float(total * p) for p in weights), tuple(str(b) for b in range(buckets))))
    return candidates, demands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-offers", type=int, default=2000)
    args = parser.parse_args()
    table = Table(title="flopex plan: MILP size and solve time (HiGHS via scipy.optimize.milp, 2 domains, spot rules)")
    for col in ("offers", "buckets", "workloads", "candidates", "after pruning (int vars)", "continuous", "rows",
                "seconds", "gap", "status"):  # fmt: skip
        table.add_column(col, justify="right")
    sizes = [(100, 10, 2), (500, 20, 3), (1000, 40, 5), (2000, 40, 5)]
    for offers, buckets, workloads in sizes:
        if offers > args.max_offers:
            continue
        candidates, demands = problem(offers, buckets, workloads)
        options = Options(utilisation=0.85, min_domains={d.workload: 2 for d in demands}, on_demand_floor=0.3,
                          max_zone_share=0.5, time_limit_s=10.0, mip_gap=0.01)  # fmt: skip
        start = time.perf_counter()
        s = solve(candidates, demands, options)
        elapsed = time.perf_counter() - start
        table.add_row(
            f"{offers:,}", str(buckets), str(workloads), f"{len(candidates):,}", f"{s.size[0]:,}", f"{s.size[1]:,}",
            f"{s.size[2]:,}", f"{elapsed:.2f}", f"{s.gap:.2%}", s.status,
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
