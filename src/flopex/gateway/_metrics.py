"""The gateway's Prometheus series: answers, latency, retries, ejections, cost and energy per backend, and their
exposition for one process or, under `flopex serve --workers N`, for all of them summed."""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from flopex.gateway._config import BackendSpec

__all__ = ["Metrics", "Series"]


@dataclass(frozen=True)
class Series:
    answered: Counter
    latency: Histogram
    cost: Counter
    in_flight: Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flopex_requests", "Requests answered", ["model", "backend", "status"], registry=self.registry
        )
        self.latency = Histogram("flopex_request_seconds", "Time to the full answer (the stream's end when streaming)",
                                 ["model"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))  # fmt: skip
        self.retries = Counter(
            "flopex_retries", "Upstream attempts retried on another backend", ["model"], registry=self.registry
        )
        self.ejections = Counter(
            "flopex_ejections", "Backends ejected after failures", ["backend"], registry=self.registry
        )
        self.stream_errors = Counter("flopex_stream_errors", "Streams ended with an error after the first byte",
                                     ["backend"], registry=self.registry)  # fmt: skip
        self.in_flight = Gauge("flopex_in_flight", "Requests in flight", ["backend"], registry=self.registry,
                               multiprocess_mode="livesum")  # fmt: skip
        self.cost = Counter(
            "flopex_cost_usd", "Cost of the answers served", ["model", "backend"], registry=self.registry
        )
        self.energy = Counter(
            "flopex_energy_wh", "Energy of the answers served", ["model", "backend"], registry=self.registry
        )
        self.refused = Counter("flopex_tenant_refusals", "Requests refused before routing: keys, scopes, rate limits, "
                               "budgets", ["model", "status"], registry=self.registry)  # fmt: skip
        self.budget_alerts = Counter(
            "flopex_budget_alerts", "Requests admitted past a soft budget", ["model"], registry=self.registry
        )
        self._series: dict[str, Series] = {}

    def of(self, spec: BackendSpec) -> Series:
        """The series every answer of `spec`'s backend updates, looked up once."""
        series = self._series.get(spec.id)
        if series is None:
            series = self._series[spec.id] = Series(
                self.requests.labels(spec.model, spec.id, "200"), self.latency.labels(spec.model),
                self.cost.labels(spec.model, spec.id), self.in_flight.labels(spec.id),
            )  # fmt: skip
        return series

    def exposition(self) -> bytes:
        """/metrics: this process's series, or, under `flopex serve --workers N` (prometheus_client's multiprocess
        mode, PROMETHEUS_MULTIPROC_DIR), the counters of every worker summed. A backend's books (its time split
        into billed, unbilled and idle) need all its requests in one place, so they are shown only by a gateway
        of one process."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
