"""Request routing: Filter -> Scorer -> Picker over an immutable snapshot of the backends.

The simulator and the gateway both route with this code. A policy filters the backends that may take a
request, scores the survivors (a weighted sum of scorers), and picks one. For large pools it may score only a
few survivors drawn at random by prior weight (`Policy.sample`: power-of-k choices), so that the cost of a
request does not grow with the pool. Pure: the snapshot and the request in, a backend id out; randomness
comes from the `random.Random` the caller passes (seeded in simulation).
"""

from __future__ import annotations

import random
import zlib
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from operator import attrgetter, itemgetter

__all__ = [
    "Backend",
    "Policy",
    "RouteRequest",
    "cheapest",
    "fastest",
    "has_capacity",
    "healthy",
    "in_jurisdiction",
    "kv_headroom",
    "least_load",
    "not_draining",
    "pick_best",
    "pick_two",
    "pick_weighted",
    "plan_share",
    "prefix_affinity",
    "prior",
    "serves",
    "within_slo",
]


@dataclass(slots=True)
class Backend:
    """What the router knows about one serving replica at one instant: a snapshot, made for one routing decision
    and never changed (not frozen only because a frozen dataclass takes three times as long to build, and one is
    built per backend per request)."""

    id: str
    group: str  # the deployment (plan candidate) it belongs to
    workloads: frozenset[str]
    healthy: bool = True
    queued: int = 0  # requests waiting for admission
    running: int = 0  # sequences in the batch
    capacity: float = 1.0  # sequences it can hold at its operating point (for load ratios)
    kv_used: float = 0.0  # share of its KV blocks in use
    shares: Mapping[tuple[str, int], float] = field(default_factory=dict)  # (workload, bucket) -> planned share
    draining: bool = False
    max_in_flight: int = 0  # 0: no limit
    usd_per_token: float = 0.0  # marginal cost of one more output token at the current load
    ttft_s: float = 0.0  # moving averages observed (or predicted) at the current load
    tpot_s: float = 0.0
    jurisdictions: frozenset[str] = frozenset()
    weight: float = 1.0  # prior (the plan's share, or the configured weight)

    @property
    def load(self) -> float:
        return (self.queued + self.running) / max(self.capacity, 1e-9)


@dataclass(frozen=True)
class RouteRequest:
    workload: str
    bucket: int
    input_tokens: int
    prefix_key: int = 0  # hash of the prompt's first characters, for prefix affinity
    jurisdiction: str | None = None  # where the caller's data may go
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None


Filter = Callable[[Backend, RouteRequest], bool]
Scorer = Callable[[Backend, RouteRequest], float]
Picker = Callable[[Sequence[tuple[Backend, float]], random.Random], Backend]

_score = itemgetter(1)
_id = attrgetter("id")


def serves(b: Backend, r: RouteRequest) -> bool:
    return r.workload in b.workloads


def healthy(b: Backend, r: RouteRequest) -> bool:
    return b.healthy


def not_draining(b: Backend, r: RouteRequest) -> bool:
    return not b.draining


def has_capacity(b: Backend, r: RouteRequest) -> bool:
    return b.max_in_flight <= 0 or b.queued + b.running < b.max_in_flight


def cheapest(b: Backend, r: RouteRequest) -> float:
    """Higher for a lower marginal cost per token (1 for a free backend)."""
    return 1.0 / (1.0 + b.usd_per_token * 1e6)


def fastest(b: Backend, r: RouteRequest) -> float:
    """Higher for a lower expected latency of a typical answer (TTFT + 100 tokens)."""
    return 1.0 / (1.0 + b.ttft_s + 100 * b.tpot_s)


def prior(b: Backend, r: RouteRequest) -> float:
    return b.weight


def least_load(b: Backend, r: RouteRequest) -> float:
    """1 for an idle backend, falling towards 0 as its queue and batch grow against its capacity."""
    c = b.capacity  # b.load, inlined (and no call to max): this runs once per backend per request
    return 1.0 / (1.0 + (b.queued + b.running) / (1e-9 if c < 1e-9 else c))


def kv_headroom(b: Backend, r: RouteRequest) -> float:
    return max(0.0, 1.0 - b.kv_used)


def plan_share(b: Backend, r: RouteRequest) -> float:
    """The share of this request's bucket the plan gives the backend's deployment."""
    return b.shares.get((r.workload, r.bucket), 0.0)


def in_jurisdiction(b: Backend, r: RouteRequest) -> bool:
    return r.jurisdiction is None or r.jurisdiction.upper() in b.jurisdictions


def within_slo(b: Backend, r: RouteRequest) -> bool:
    """The backend's expected TTFT and TPOT at its current load are within the request's SLO."""
    return (r.ttft_slo_s is None or b.ttft_s <= r.ttft_slo_s) and (r.tpot_slo_s is None or b.tpot_s <= r.tpot_slo_s)


def pick_best(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
    """The highest score; ties go to the lowest id in plain string order (deterministic: `a` before `ab`)."""
    top = max(scored, key=_score)[1]
    best = [b for b, s in scored if s == top]
    return best[0] if len(best) == 1 else min(best, key=_id)


def pick_two(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
    """Power of two choices: the better-scored of two drawn at random."""
    if len(scored) <= 2:
        return pick_best(scored, rng)
    a, b = rng.sample(range(len(scored)), 2)
    return scored[a][0] if scored[a][1] >= scored[b][1] else scored[b][0]


def prefix_affinity(candidates: Sequence[Backend], r: RouteRequest) -> str | None:
    """The backend a prompt prefix maps to on a consistent-hash ring (rendezvous hashing)."""
    if not candidates or not r.prefix_key:
        return None
    return max(candidates, key=lambda b: zlib.crc32(f"{b.id}:{r.prefix_key}".encode())).id


def pick_weighted(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
    """At random in proportion to score (the best one if every score is 0)."""
    positive = [0.0 if s < 0.0 else s for _, s in scored]  # max(s, 0.0)
    total = sum(positive)
    if total <= 0:
        return pick_best(scored, rng)
    x = rng.random() * total
    for (backend, _), p in zip(scored, positive, strict=True):
        x -= p
        if x <= 0:
            return backend
    return scored[-1][0]


def _draw(
    pool: Sequence[Backend], k: int, rng: random.Random, filters: Sequence[Filter], request: RouteRequest
) -> list[Backend]:
    """Up to `k` backends of `pool` that pass `filters`, drawn at random without replacement in proportion to
    their prior weight (uniformly when the weights are all equal; one of weight 0 only when no other is left).

    Only the backends drawn are filtered, so when most pass this costs O(k) calls whatever the pool's size
    (plus one quick pass over the weights). When draws keep landing on backends already drawn or filtered out,
    the rest are drawn from one filtered pass over those not yet drawn: the same distribution either way.
    """
    n = len(pool)
    weights = [b.weight for b in pool]  # about 16 ns a backend; the only pass over the whole pool
    cum = None if weights.count(weights[0]) == n else list(accumulate(w if w > 0.0 else 0.0 for w in weights))
    if cum is not None and cum[-1] <= 0.0:
        cum = None
    chosen: list[Backend] = []
    seen: set[int] = set()
    for _ in range(4 * k + 8):
        i = rng.randrange(n) if cum is None else bisect_right(cum, rng.random() * cum[-1])
        if i >= n or i in seen:
            continue
        seen.add(i)
        if all(f(pool[i], request) for f in filters):
            chosen.append(pool[i])
            if len(chosen) == k:
                return chosen
        if len(seen) == n:
            return chosen
    rest = [b for i, b in enumerate(pool) if i not in seen and all(f(b, request) for f in filters)]
    while len(chosen) < k and rest:
        ws = [b.weight if b.weight > 0.0 else 0.0 for b in rest] if cum is not None else []
        j = rng.choices(range(len(rest)), weights=ws)[0] if sum(ws) > 0.0 else rng.randrange(len(rest))
        chosen.append(rest.pop(j))
    return chosen


def _admit(backends: Sequence[Backend], request: RouteRequest, filters: Sequence[Filter]) -> Sequence[Backend]:
    """The backends that pass every filter, in their order (one pass per filter: no per-backend closure)."""
    alive = backends
    for f in filters:
        alive = [b for b in alive if f(b, request)]
    return alive


@dataclass(frozen=True)
class Policy:
    """Filters (all must pass), scorers with weights (summed, or multiplied when `product`), a picker.

    `sample` > 0 scores only that many of the backends that pass the filters, drawn at random in proportion
    to their prior weight (`Backend.weight`): with `pick_best`, power-of-k choices. 0 scores every one.
    """

    filters: tuple[Filter, ...] = (serves, healthy)
    scorers: tuple[tuple[Scorer, float], ...] = ((least_load, 1.0),)
    picker: Picker = pick_best
    product: bool = False
    prefix_weight: float = 0.0  # bonus for the backend a prompt prefix hashes to
    sample: int = 0  # score only this many backends, drawn by prior weight (0: all of them)
    prefer: tuple[Filter, ...] = ()  # soft filters: kept to those that pass them, unless none does
    slo: tuple[float | None, float | None] = (None, None)  # TTFT, TPOT for requests that bring none

    def route(self, backends: Sequence[Backend], request: RouteRequest, rng: random.Random) -> Backend | None:
        """The chosen backend, or None when no backend passes the filters. With `prefer`, the choice is among
        the backends that also pass the preferences (e.g. expected to meet the SLO) when there are any, else
        among all that pass the filters (degraded rather than refused)."""
        if self.slo != (None, None) and request.ttft_slo_s is None and request.tpot_slo_s is None:
            request = replace(request, ttft_slo_s=self.slo[0], tpot_slo_s=self.slo[1])
        if self.prefer:
            preferred = self._route(backends, request, rng, (*self.filters, *self.prefer))
            return preferred or self._route(backends, request, rng, self.filters)
        return self._route(backends, request, rng, self.filters)

    def _route(
        self, backends: Sequence[Backend], request: RouteRequest, rng: random.Random, filters: tuple[Filter, ...]
    ) -> Backend | None:
        alive, affine = self._candidates(backends, request, rng, filters)
        if not alive:
            return None
        scores = self._scores(alive, request)
        if affine is not None:
            scores = [s + self.prefix_weight if b.id == affine else s for b, s in zip(alive, scores, strict=True)]
        return self.picker(list(zip(alive, scores, strict=True)), rng)

    def _candidates(
        self, backends: Sequence[Backend], request: RouteRequest, rng: random.Random, filters: tuple[Filter, ...]
    ) -> tuple[Sequence[Backend], str | None]:
        """The backends to score, and the one the request's prompt prefix hashes to (None without affinity)."""
        k = self.sample
        if 0 < k < len(backends) and not self.prefix_weight:
            return _draw(backends, k, rng, filters, request), None
        alive = _admit(backends, request, filters)
        affine = prefix_affinity(alive, request) if self.prefix_weight else None
        if 0 < k < len(alive):  # affinity hashes over every backend that passes; its backend is always scored
            drawn = _draw(alive, k, rng, (), request)
            if affine is not None and all(b.id != affine for b in drawn):
                drawn.extend(b for b in alive if b.id == affine)
            return drawn, affine
        return alive, affine

    def _scores(self, alive: Sequence[Backend], request: RouteRequest) -> list[float]:
        """Each backend's score, computed scorer by scorer; the arithmetic (and so every result) is the
        per-backend sum or product of weighted scorers, in the same order."""
        columns = [[scorer(b, request) for b in alive] for scorer, _ in self.scorers]
        if self.product:
            scores = [1.0] * len(alive)
            for column, (_, weight) in zip(columns, self.scorers, strict=True):
                if weight == 1.0:
                    scores = [s * x for s, x in zip(scores, column, strict=True)]
                else:
                    scores = [s * x**weight for s, x in zip(scores, column, strict=True)]
            return scores
        weighted = [[weight * x for x in column] for column, (_, weight) in zip(columns, self.scorers, strict=True)]
        if len(weighted) == 1:
            return weighted[0]
        return [sum(terms) for terms in zip(*weighted, strict=True)]

    @staticmethod
    def least_loaded() -> Policy:
        return Policy()

    @staticmethod
    def plan_weighted() -> Policy:
        """Follow the plan's routing shares, leaning away from loaded replicas: share x 1/(1 + load)."""
        return Policy(scorers=((plan_share, 1.0), (least_load, 1.0)), picker=pick_weighted, product=True)
