"""Turning a simulation into numbers people compare: percentiles, SLO attainment, goodput, utilisation,
cost, energy and what preemptions did; and every request's cost, energy and carbon through the meter the
gateway labels live requests with (`flopex.economics.BackendMeter`), so that per replica the labels plus its
idle cost are its $/h over the horizon."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flopex.economics import BackendMeter, Charge, MeterTotals, RateCard
from flopex.sim._engine import Completed, SimReplica, SimResult
from flopex.workloads import TokenSlo

__all__ = ["Report", "meter_requests", "report"]


def _pct(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}
    a = np.asarray(values)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99))}  # fmt: skip


@dataclass(frozen=True)
class Report:
    data: dict[str, Any]


def _summary(done: Sequence[Completed], slo: TokenSlo, horizon: float) -> dict[str, Any]:
    ok = [c for c in done if slo.met(c.ttft, c.tpot, c.e2e)]
    return {
        "requests": len(done),
        "ttft_s": _pct([c.ttft for c in done]),
        "tpot_s": _pct([c.tpot for c in done if c.request.output_tokens > 1]),
        "e2e_s": _pct([c.e2e for c in done]),
        "slo_attainment": len(ok) / len(done) if done else 0.0,
        "goodput_rps": len(ok) / horizon if horizon else 0.0,
        "throughput_rps": len(done) / horizon if horizon else 0.0,
        "output_tokens_per_s": sum(c.request.output_tokens for c in done) / horizon if horizon else 0.0,
        "preempted_requests": sum(1 for c in done if c.preemptions),
    }


def report(
    result: SimResult,
    replicas: Sequence[SimReplica],
    slos: Mapping[str, TokenSlo],
    usd_per_hour: float,
) -> Report:
    horizon = result.horizon_s
    by_workload: dict[str, list[Completed]] = defaultdict(list)
    by_group: dict[str, list[Completed]] = defaultdict(list)
    group_of = {r.id: r.group for r in replicas}
    for c in result.completed:
        by_workload[c.request.workload].append(c)
        by_group[group_of[c.replica]].append(c)
    workload_slo = {r.group: slos[sorted(r.workloads)[0]] for r in replicas}
    completed = len(result.completed)
    mean_e2e = float(np.mean([c.e2e for c in result.completed])) if completed else 0.0
    throughput = completed / horizon if horizon else 0.0
    data = {
        "horizon_s": horizon,
        "requests": completed + len(result.dropped),
        "completed": completed,
        "dropped": len(result.dropped),
        "engine_steps": result.steps,
        "workloads": {w: _summary(done, slos[w], horizon) for w, done in sorted(by_workload.items())},
        "deployments": {g: _summary(done, workload_slo[g], horizon) for g, done in sorted(by_group.items())},
        "replicas": {
            r.id: {
                "deployment": r.group,
                "busy_share": result.replica_busy_s[r.id] / horizon if horizon else 0.0,
                "kv_preemptions": result.preemptions[r.id],
                "energy_kwh": result.replica_energy_j[r.id] / 3.6e6,
                "series": [{"t": t, "queue": q, "busy": u} for t, q, u in result.series.get(r.id, [])],
            }
            for r in replicas
        },
        "littles_law": {
            "mean_in_system": result.in_system_area / horizon if horizon else 0.0,
            "throughput_x_mean_e2e": throughput * mean_e2e,
        },
        "cost_usd": usd_per_hour * horizon / 3600,
        "energy_kwh": sum(result.replica_energy_j.values()) / 3.6e6,
        "spot_preemptions": [{"t": t, "replica": r, "requests_rerouted": n} for t, r, n in result.spot_preemptions],
        "kv_preemptions": sum(result.preemptions.values()),
        "labels": _labels(result, replicas),
    }
    return Report(data)


def _card(r: SimReplica) -> RateCard:
    """A replica's rate card; 0 W means its power is unknown (no TDP in the catalog)."""
    busy = r.busy_w if r.busy_w > 0 else None
    return RateCard(
        usd_per_hour=r.usd_per_hour, busy_w=busy, idle_w=r.idle_w if busy is not None else None,
        grid_gco2e_per_kwh=r.grid_gco2e_per_kwh, backend=r.id,
    )  # fmt: skip


def meter_requests(
    result: SimResult, replicas: Sequence[SimReplica]
) -> tuple[list[tuple[Completed, Charge]], dict[str, MeterTotals]]:
    """Each completed request's charge on its replica's meter, and each replica's books over [0, horizon].

    A request is on its replica from when it was put there (its arrival, or its re-routing after a fault) to
    its last token, prefilling (weighted by its prompt) until its first token. The time a fault took from a
    replica, and the work lost with it, count as that replica's idle time."""
    events: dict[str, list[tuple[float, int, int]]] = defaultdict(list)  # replica -> (time, kind, index)
    done = result.completed
    for i, c in enumerate(done):
        start = c.placed if c.placed >= 0 else c.request.arrival
        events[c.replica] += [(start, 0, i), (c.first_token, 1, i), (c.finish, 2, i)]
    charges: dict[int, Charge] = {}
    books = {}
    for r in replicas:
        meter = BackendMeter(_card(r), 0.0)
        for t, kind, i in sorted(events.get(r.id, ())):
            if kind == 0:
                meter.start(i, t, done[i].request.input_tokens)
            elif kind == 1:
                meter.first_token(i, t)
            else:
                charges[i] = meter.finish(i, t)
        books[r.id] = meter.totals(max(result.horizon_s, 0.0))
    return [(c, charges[i]) for i, c in enumerate(done)], books


def _labels(result: SimResult, replicas: Sequence[SimReplica]) -> dict[str, Any]:
    """Labelled cost, energy and carbon per workload; per replica, labels + idle = its $/h x the horizon."""
    charged, books = meter_requests(result, replicas)
    workloads: dict[str, dict[str, Any]] = {}
    for c, charge in charged:
        w = workloads.setdefault(c.request.workload, {"requests": 0, "output_tokens": 0, "cost_usd": 0.0,
                                                      "energy_kwh": 0.0, "co2e_kg": 0.0})  # fmt: skip
        w["requests"] += 1
        w["output_tokens"] += c.request.output_tokens
        w["cost_usd"] += charge.usd
        w["energy_kwh"] = None if charge.wh is None or w["energy_kwh"] is None else w["energy_kwh"] + charge.wh / 1e3
        w["co2e_kg"] = None if charge.co2e_g is None or w["co2e_kg"] is None else w["co2e_kg"] + charge.co2e_g / 1e3
    for w in workloads.values():
        w["usd_per_request"] = w["cost_usd"] / w["requests"]
        w["usd_per_mtok_output"] = w["cost_usd"] / w["output_tokens"] * 1e6 if w["output_tokens"] else None
    labelled = sum(b.labelled_usd for b in books.values())
    idle = sum(b.idle_usd for b in books.values())
    cost = sum(b.backend_usd for b in books.values())
    return {
        "method": "each request's share of its replica's $/h and power while in flight, split by work per engine "
        "step (prompt tokens while prefilled, one token per step while decoded), as the gateway labels live "
        "requests; time with nothing in flight is the replica's idle cost",
        "labelled_usd": labelled,
        "idle_usd": idle,
        "replicas_usd": cost,
        "workloads": dict(sorted(workloads.items())),
        "replicas": {r.id: _replica_books(r, books[r.id]) for r in replicas},
    }


def _replica_books(r: SimReplica, b: MeterTotals) -> dict[str, Any]:
    def kwh(wh: float | None) -> float | None:
        return None if wh is None else wh / 1e3

    return {
        "usd_per_hour": r.usd_per_hour,
        "labelled_usd": b.labelled_usd,
        "idle_usd": b.idle_usd,
        "backend_usd": b.backend_usd,
        "busy_share": b.busy_s / b.window_s if b.window_s else 0.0,
        "labelled_kwh": kwh(b.labelled_wh),
        "idle_kwh": kwh(b.idle_wh),
        "backend_kwh": kwh(b.backend_wh),
    }
