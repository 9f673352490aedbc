"""Request routing: Filter -> Scorer -> Picker over an immutable snapshot of the backends.

The simulator and the gateway both route with this code. A policy filters the backends that may take a
request, scores the survivors (a weighted sum of scorers), and picks one. Pure: the snapshot and the request
in, a backend id out; randomness comes from the `random.Random` the caller passes (seeded in simulation).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Backend",
    "Policy",
    "RouteRequest",
    "healthy",
    "kv_headroom",
    "least_load",
    "pick_best",
    "pick_weighted",
    "plan_share",
    "serves",
]


@dataclass(frozen=True)
class Backend:
    """What the router knows about one serving replica at one instant."""

    id: str
    group: str  # the deployment (plan candidate) it belongs to
    workloads: frozenset[str]
    healthy: bool = True
    queued: int = 0  # requests waiting for admission
    running: int = 0  # sequences in the batch
    capacity: float = 1.0  # sequences it can hold at its operating point (for load ratios)
    kv_used: float = 0.0  # share of its KV blocks in use
    shares: Mapping[tuple[str, int], float] = field(default_factory=dict)  # (workload, bucket) -> planned share

    @property
    def load(self) -> float:
        return (self.queued + self.running) / max(self.capacity, 1e-9)


@dataclass(frozen=True)
class RouteRequest:
    workload: str
    bucket: int
    input_tokens: int


Filter = Callable[[Backend, RouteRequest], bool]
Scorer = Callable[[Backend, RouteRequest], float]
Picker = Callable[[Sequence[tuple[Backend, float]], random.Random], Backend]


def serves(b: Backend, r: RouteRequest) -> bool:
    return r.workload in b.workloads


def healthy(b: Backend, r: RouteRequest) -> bool:
    return b.healthy


def least_load(b: Backend, r: RouteRequest) -> float:
    """1 for an idle backend, falling towards 0 as its queue and batch grow against its capacity."""
    return 1.0 / (1.0 + b.load)


def kv_headroom(b: Backend, r: RouteRequest) -> float:
    return max(0.0, 1.0 - b.kv_used)


def plan_share(b: Backend, r: RouteRequest) -> float:
    """The share of this request's bucket the plan gives the backend's deployment."""
    return b.shares.get((r.workload, r.bucket), 0.0)


def pick_best(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
    """The highest score; ties go to the lowest id (deterministic)."""
    return max(scored, key=lambda bs: (bs[1], tuple(-ord(ch) for ch in bs[0].id)))[0]


def pick_weighted(scored: Sequence[tuple[Backend, float]], rng: random.Random) -> Backend:
    """At random in proportion to score (the best one if every score is 0)."""
    total = sum(max(s, 0.0) for _, s in scored)
    if total <= 0:
        return pick_best(scored, rng)
    x = rng.random() * total
    for backend, score in scored:
        x -= max(score, 0.0)
        if x <= 0:
            return backend
    return scored[-1][0]


@dataclass(frozen=True)
class Policy:
    """Filters (all must pass), scorers with weights (summed, or multiplied when `product`), a picker."""

    filters: tuple[Filter, ...] = (serves, healthy)
    scorers: tuple[tuple[Scorer, float], ...] = ((least_load, 1.0),)
    picker: Picker = pick_best
    product: bool = False

    def route(self, backends: Sequence[Backend], request: RouteRequest, rng: random.Random) -> Backend | None:
        """The chosen backend, or None when no backend passes the filters."""
        alive = [b for b in backends if all(f(b, request) for f in self.filters)]
        if not alive:
            return None
        scored = []
        for b in alive:
            if self.product:
                score = 1.0
                for scorer, weight in self.scorers:
                    score *= scorer(b, request) ** weight
            else:
                score = sum(weight * scorer(b, request) for scorer, weight in self.scorers)
            scored.append((b, score))
        return self.picker(scored, rng)

    @staticmethod
    def least_loaded() -> Policy:
        return Policy()

    @staticmethod
    def plan_weighted() -> Policy:
        """Follow the plan's routing shares, leaning away from loaded replicas: share x 1/(1 + load)."""
        return Policy(scorers=((plan_share, 1.0), (least_load, 1.0)), picker=pick_weighted, product=True)
