"""Capacity measured by simulation: the highest request rate one replica sustains within an SLO.

The planner's capacities are analytic (`flopex.perf`); this measures the same thing by running the engine
scheduler under random arrivals, to check the analytic figure and to correct it where a plan is verified.
Arrivals are drawn once at unit rate and scaled, so every trial of the bisection sees the same pattern
(common random numbers) and attainment falls monotonically with the rate.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from flopex.perf import Replica
from flopex.routing import Policy
from flopex.sim._engine import Request, SimOptions, SimReplica, simulate
from flopex.workloads import TokenSlo

__all__ = ["Attainment", "Length", "attainment", "measured_capacity", "p99", "unit_arrivals"]


@dataclass(frozen=True)
class Length:
    """One kind of request in a mix: its lengths, its share and the SLO each request must meet."""

    input_tokens: int
    output_tokens: int
    weight: float
    slo: TokenSlo


@dataclass(frozen=True)
class Attainment:
    share: float  # of requests within both limits
    ttft_p99_s: float
    tpot_p99_s: float


def unit_arrivals(n: int, burstiness: float, seed: int) -> list[float]:
    """`n` arrival times at one request per second: Poisson when `burstiness` (the squared coefficient of
    variation of the gaps) is 1, gamma-distributed gaps otherwise."""
    rng = random.Random(seed)
    t, out = 0.0, []
    shape = 1 / burstiness
    for _ in range(n):
        t += rng.expovariate(1.0) if burstiness == 1 else rng.gammavariate(shape, 1 / shape)
        out.append(t)
    return out


def p99(values: Sequence[float]) -> float:
    """The 99th percentile, nearest rank (0 for no values)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def attainment(
    replica: Replica, mix: Sequence[Length], rate: float, arrivals: Sequence[float], seed: int = 0
) -> Attainment:
    """One replica at `rate` requests/s, each request's lengths drawn from `mix` by weight."""
    rng = random.Random(seed + 1)
    picks = rng.choices(range(len(mix)), weights=[m.weight for m in mix], k=len(arrivals))
    reqs = [
        Request(k, t / rate, "w", b, mix[b].input_tokens, mix[b].output_tokens)
        for k, (t, b) in enumerate(zip(arrivals, picks, strict=True))
    ]
    shares = {("w", b): 1.0 for b in range(len(mix))}
    rep = SimReplica("r", "g", frozenset({"w"}), replica, shares)
    done = simulate(reqs, [rep], SimOptions(seed=seed, policy=Policy.least_loaded(), spot_preemptions=False)).completed
    warm = len(done) // 20  # the first requests meet an empty replica
    measured = [c for c in done if c.request.id >= warm]
    ok = sum(1 for c in measured if mix[c.request.bucket].slo.met(c.ttft, c.tpot, c.e2e))
    return Attainment(
        ok / len(measured) if measured else 0.0,
        p99([c.ttft for c in measured]),
        p99([c.tpot for c in measured if c.request.output_tokens > 1]),
    )


def measured_capacity(
    replica: Replica,
    mix: Sequence[Length],
    *,
    target: float = 0.99,
    guess: float = 1.0,
    requests: int = 3000,
    burstiness: float = 1.0,
    seed: int = 0,
    tolerance: float = 0.02,
) -> float:
    """The highest rate (requests/s) at which at least `target` of the requests meet both of their limits:
    bracketed from `guess` in steps of 25%, then bisected to `tolerance`."""
    arrivals = unit_arrivals(requests, burstiness, seed)

    def ok(rate: float) -> bool:
        return attainment(replica, mix, rate, arrivals, seed).share >= target

    step = 1.25  # the guess is the model's figure, usually within a few tens of percent
    lo = hi = guess
    if ok(guess):
        while ok(hi * step):
            hi *= step
            if hi > 1e5:
                return hi
        lo, hi = hi, hi * step
    else:
        while not ok(lo / step):
            lo /= step
            if lo < 1e-4:
                return 0.0
        lo, hi = lo / step, lo
    while hi - lo > tolerance * lo:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
