"""Turning a simulation into numbers people compare: percentiles, SLO attainment, goodput, utilisation,
cost, energy and what preemptions did."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flopex.sim._engine import Completed, SimReplica, SimResult
from flopex.workloads import TokenSlo

__all__ = ["Report", "report"]


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
    }
    return Report(data)
