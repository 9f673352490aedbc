"""Pruning never changes the optimum: pruned and unpruned solves of random small fleets cost the same."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

import flopex.plan._milp as milp_module
from flopex.plan import Candidate, Demand, Options, Solution, prune, solve

ZONES = [f"p{p}/r{r}/{z}" for p in range(2) for r in range(3) for z in "ab"]


def _instance(rng: random.Random) -> tuple[list[Candidate], list[Demand], Options]:
    """One or two workloads; a few instance shapes (classes), each sold in several zones at several prices,
    on demand or spot; random zone caps, floors, domain minimums and utilisation."""
    demands, candidates = [], []
    for w in ("w0", "w1")[: rng.randint(1, 2)]:
        buckets = rng.randint(1, 3)
        rates = tuple(rng.uniform(1, 30) for _ in range(buckets))
        demands.append(Demand(w, rates, tuple(map(str, range(buckets)))))
        for shape in range(rng.randint(2, 4)):  # a group carries 10-70% of the workload: zones fill in steps
            capacity = tuple(rng.choice([0.0, 1.0]) * sum(rates) * rng.uniform(0.1, 0.7) if b else
                             sum(rates) * rng.uniform(0.1, 0.7) for b in range(buckets))  # fmt: skip
            spot = rng.random() < 0.6
            base = rng.uniform(0.5, 5) * (0.4 if spot else 1.0)
            for member in range(rng.randint(2, 7)):
                zone = rng.choice(ZONES)
                provider, region, _ = zone.split("/")
                candidates.append(Candidate(
                    f"{w}|s{shape}|m{member}", w, f"o{shape}.{member}", f"shape{shape}",
                    round(base * rng.choice([1.0, rng.uniform(1.0, 1.1), rng.uniform(0.8, 1.5)]), 3), capacity,
                    spot=spot, zone=zone,
                    region=region, provider=provider, interruption_rate=0.5 if spot else 0.0,
                ))  # fmt: skip
    options = Options(
        utilisation=rng.choice([0.7, 0.85, 1.0]),
        min_domains={d.workload: rng.choice([1, 1, 2, 3]) for d in demands},
        domain=rng.choice(["region", "provider", "zone"]),
        on_demand_floor=rng.choice([0.0, 0.0, 0.2, 0.5]),
        max_zone_share=rng.choice([1.0, 0.25, 0.34, 0.4, 0.5, 0.6, 0.75]),
        recovery_s=rng.choice([120.0, 600.0]),
        whole=rng.random() < 0.15,
        mip_gap=0.0,
        time_limit_s=60.0,
    )
    return candidates, demands, options


def _unpruned(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[Candidate], list[Demand], Options], Solution]:
    def run(candidates: list[Candidate], demands: list[Demand], options: Options) -> Solution:
        with monkeypatch.context() as m:
            m.setattr(milp_module, "prune", lambda cands, _options, _demands: cands)
            return solve(candidates, demands, options)

    return run


def test_pruned_and_unpruned_optima_agree_on_random_fleets(monkeypatch: pytest.MonkeyPatch) -> None:
    unpruned = _unpruned(monkeypatch)
    rng = random.Random(20261129)
    dropped = binding_caps = 0
    for case in range(60):
        candidates, demands, options = _instance(rng)
        full = unpruned(candidates, demands, options)
        pruned = solve(candidates, demands, options)
        assert pruned.status == full.status, (case, full.message, pruned.message)
        if full.feasible:
            assert full.status == "optimal"
            assert pruned.usd_per_hour == pytest.approx(full.usd_per_hour, rel=1e-6, abs=1e-6), case
        dropped += len(candidates) - len(prune(candidates, options, demands))
        binding_caps += full.feasible and options.max_zone_share < 1
    assert dropped > 100 and binding_caps > 10  # the cases exercise pruning under zone caps


def _spot(cid: str, zone: str, usd: float = 1.01, cap: float = 4.0) -> Candidate:
    provider, region, _ = zone.split("/")
    return Candidate(cid, "w", cid, "", usd, (cap,), spot=True, zone=zone, region=region, provider=provider)


def test_a_zone_cap_keeps_as_many_zones_as_cheap_spreading_can_use() -> None:
    # three identical spot offers, each group 4 req/s, 10 req/s to serve, no zone above half of it: one group
    # in each of three zones ($3.03) beats two groups in each of two ($4.04)
    spots = [_spot(f"s{i}", f"p/r{i}/a") for i in range(3)]
    demand = [Demand("w", (10.0,), ("all",))]
    options = Options(utilisation=1.0, max_zone_share=0.5, mip_gap=0)
    assert len(prune(spots, options, demand)) == 3
    s = solve(spots, demand, options)
    assert s.usd_per_hour == pytest.approx(3.03) and s.groups == {"s0": 1, "s1": 1, "s2": 1}


@pytest.mark.parametrize(
    ("cap", "floor", "zones"),
    [
        (1.0, 0.0, 1),  # no zone cap: the cheapest alone
        (0.5, 0.5, 1),  # the floor leaves at most half on spot: the cap can never bind
        (0.5, 0.0, 3),  # G = 1 req/s, cap x T = 50: ceil((100 - 1) / (50 - 1)) = 3
        (0.25, 0.0, 5),  # ceil((100 - 1) / (25 - 1)) = 5
        (0.25, 0.3, 3),  # at most 70 on spot: ceil((70 - 1) / (25 - 1)) = 3
    ],
)
def test_small_groups_need_few_zones(cap: float, floor: float, zones: int) -> None:
    spots = [_spot(f"s{i}", f"p/r{i}/a", usd=1 + i / 100, cap=1.0) for i in range(8)]
    options = Options(utilisation=1.0, max_zone_share=cap, on_demand_floor=floor)
    kept = prune(spots, options, [Demand("w", (100.0,), ("all",))])
    assert [c.id for c in kept] == [f"s{i}" for i in range(zones)]  # the cheapest zones


def test_failure_domains_keep_the_cheapest_offer_of_as_many_domains() -> None:
    ids = prune(
        [_spot("a", "p/r1/a", 1.0), _spot("b", "p/r1/b", 1.1), _spot("c", "p/r2/a", 1.2), _spot("d", "p/r3/a", 1.3)],
        Options(min_domains={"w": 2}, domain="region"),
        [Demand("w", (10.0,), ("all",))],
    )
    assert [c.id for c in ids] == ["a", "c"]


def test_a_zone_that_spans_two_domains_keeps_every_zone() -> None:
    odd = Candidate("x", "w", "x", "", 1.5, (4.0,), spot=True, zone="p/r0/a", region="r9", provider="p")
    spots = [*(_spot(f"s{i}", f"p/r{i}/a", usd=1 + i / 100, cap=1.0) for i in range(6)), odd]
    options = Options(utilisation=1.0, max_zone_share=0.5, min_domains={"w": 2})
    assert len(prune(spots, options, [Demand("w", (100.0,), ("all",))])) == 7
