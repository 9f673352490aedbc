"""Backends at run time: in-flight counts, moving averages of TTFT and TPOT, passive outlier ejection with
backoff and half-open probes, draining; immutable routing snapshots."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from flopex.gateway._config import BackendSpec, ModelRoute
from flopex.routing import Backend, Policy, RouteRequest, RoutingConfig
from flopex.workloads import nearest_bucket

__all__ = ["BackendState", "Pool"]

_ALPHA = 0.2  # weight of the newest observation in the moving averages


class BackendState:
    """Mutable state of one backend in this gateway process."""

    __slots__ = ("spec", "in_flight", "ttft", "tpot", "failures", "ejected_until", "backoff", "draining",
                 "probing", "served", "errors", "shares")  # fmt: skip

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.in_flight = 0
        self.ttft = spec.ttft_s
        self.tpot = spec.tpot_s
        self.failures = 0
        self.ejected_until = 0.0
        self.backoff = 0.0
        self.draining = False
        self.probing = False  # a half-open probe is in flight
        self.served = 0
        self.errors = 0
        self.shares = {(spec.model, b): x for b, x in enumerate(spec.shares)}

    def available(self, now: float) -> bool:
        """Not ejected; once the backoff has passed, one probe request at a time (half-open)."""
        if self.ejected_until <= 0:
            return True
        return now >= self.ejected_until and not self.probing

    def usd_per_token(self) -> float:
        s = self.spec
        if s.hosted:
            return (s.usd_per_mtok_output or 0.0) / 1e6
        # cost per token at the utilisation this request brings: a busier backend spreads its $/h wider
        utilisation = min(1.0, (self.in_flight + 1) / max(s.max_concurrency, 1))
        return s.usd_per_hour / 3600 / (s.tokens_per_s * max(utilisation, 0.05))

    def snapshot(self, now: float) -> Backend:
        s = self.spec
        return Backend(
            id=s.id, group=s.id, workloads=frozenset({s.model}), healthy=self.available(now),
            running=self.in_flight, capacity=float(s.max_concurrency), draining=self.draining,
            max_in_flight=s.max_concurrency, usd_per_token=self.usd_per_token(), ttft_s=self.ttft,
            tpot_s=self.tpot, jurisdictions=s.jurisdictions, weight=s.weight, shares=self.shares,
        )  # fmt: skip

    def observe(self, ttft: float | None, tpot: float | None) -> None:
        if ttft is not None:
            self.ttft += _ALPHA * (ttft - self.ttft)
        if tpot is not None and tpot > 0:
            self.tpot += _ALPHA * (tpot - self.tpot)

    def succeeded(self) -> None:
        self.restore()
        self.served += 1

    def restore(self) -> None:
        """In service again, with a clean record (its probe answered, here or in another gateway process)."""
        self.failures = 0
        self.ejected_until = 0.0
        self.backoff = 0.0
        self.probing = False

    def released(self) -> None:
        """An attempt ended with no verdict on the backend (its client left, the answer was the client's error,
        or the failure may be the request's own): another half-open probe may go."""
        self.probing = False

    def failed(self, now: float, eject_after: int, backoff_s: float, max_backoff_s: float) -> bool:
        """Count a failure that is the backend's fault; eject (with doubling backoff) after `eject_after` in a row,
        or when a half-open probe fails. Attempts sent before an ejection that fail during it do not lengthen
        it. True when ejected now."""
        self.errors += 1
        self.failures += 1
        was_probe = self.probing
        self.probing = False
        if now < self.ejected_until:
            return False
        if self.failures >= eject_after or was_probe:
            self.backoff = min(max_backoff_s, self.backoff * 2 if self.backoff else backoff_s)
            self.ejected_until = now + self.backoff
            return True
        return False


@dataclass
class Pool:
    """The backends of one model and how to choose among them (the routing configuration's policy)."""

    model: str
    states: list[BackendState]
    config: RoutingConfig
    policy: Policy
    buckets: tuple[int, ...]  # prompt length of each bucket the plan's shares are given for

    @staticmethod
    def of(model: str, specs: Sequence[BackendSpec], route: ModelRoute) -> Pool:
        return Pool(model, [BackendState(s) for s in specs], route.routing, route.routing.policy(), route.buckets)

    def request(self, input_tokens: int, prefix_key: int, jurisdiction: str | None) -> RouteRequest:
        """A request to route, bucketed by its prompt length as the plan's traffic was."""
        bucket = nearest_bucket(self.buckets, input_tokens) if self.buckets else 0
        return RouteRequest(self.model, bucket, input_tokens, prefix_key, jurisdiction)

    def choose(self, request: RouteRequest, exclude: set[str], rng: random.Random, now: float) -> BackendState | None:
        """The backend for `request` among those not in `exclude`, by the policy, as they stand at `now`; an
        ejected backend chosen past its backoff is the half-open probe."""
        snapshot = [s.snapshot(now) for s in self.states if s.spec.id not in exclude]
        chosen = self.policy.route(snapshot, request, rng)
        if chosen is None:
            return None
        state = next(s for s in self.states if s.spec.id == chosen.id)
        if state.ejected_until > 0:
            state.probing = True
        return state
