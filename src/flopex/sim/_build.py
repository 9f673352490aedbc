"""From a plan document to simulated replicas: each deployment's groups, each group's model replicas, with the
plan's routing shares, spot exposure and power; and the part of the traffic the plan sends to hosted APIs."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence

from flopex.catalog import Catalog
from flopex.errors import SimError
from flopex.perf import Efficiency, Replica
from flopex.plan import Deployment, Plan, PlanDocument, plan_document, replica_of
from flopex.sim._engine import Request, SimReplica
from flopex.workloads import ChatWorkload, Workload

__all__ = ["deployment_replica", "group_replica", "hosted_shares", "replicas_from_document", "replicas_from_plan",
           "split_hosted"]  # fmt: skip


def deployment_replica(doc: PlanDocument, d: Deployment, catalog: Catalog, eff: Efficiency) -> tuple[Replica, int]:
    """The model replica one group of a deployment runs, and how many of them a group holds."""
    if d.accelerator is None or d.precision is None:
        raise SimError(f"deployment {d.id} names no accelerator or precision; the simulator replays self-hosted ones.")
    workload = doc.workload(d.workload).workload()
    return _group(workload, d.offer, d.accelerator, d.instances_per_group or 1, d.precision, catalog, eff)


def group_replica(plan: Plan, cid: str, catalog: Catalog, eff: Efficiency) -> tuple[Replica, int]:
    """The model replica a candidate's group runs, and how many of them a group holds."""
    c = next(c for c in plan.inputs.candidates if c.id == cid)
    workload = next(w for w in plan.workloads if w.name == c.workload)
    return _group(workload, c.offer, c.accelerator, c.instances, c.precision, catalog, eff)


def _group(
    w: Workload, offer_id: str, accelerator: str, instances: int, precision: str, catalog: Catalog, eff: Efficiency
) -> tuple[Replica, int]:
    if not isinstance(w, ChatWorkload):
        raise SimError(
            f"workload {w.name} is {w.kind}; the simulator replays token traffic (chat and completion workloads)."
        )
    offer = catalog.offer(offer_id)
    if offer is None:
        raise SimError(f"offer {offer_id} is not in the catalog the plan was made with.")
    return replica_of(w, accelerator, offer.accelerator_count, instances, precision, catalog, eff)


def replicas_from_plan(plan: Plan, catalog: Catalog, eff: Efficiency) -> list[SimReplica]:
    """One `SimReplica` per model replica the plan deploys (chat and completion workloads)."""
    return replicas_from_document(plan_document(plan, catalog, eff), catalog, eff)


def replicas_from_document(doc: PlanDocument, catalog: Catalog, eff: Efficiency) -> list[SimReplica]:
    """One `SimReplica` per model replica of the document's self-hosted deployments."""
    out: list[SimReplica] = []
    hosted = sorted((d for d in doc.deployments if d.self_hosted), key=lambda d: d.id)
    names = Counter(f"{d.workload}:{d.offer}" for d in hosted)
    for d in hosted:
        model, fitted = deployment_replica(doc, d, catalog, eff)
        per_group = d.layout.replicas_per_group if d.layout is not None else fitted
        name = f"{d.workload}:{d.offer}" if names[f"{d.workload}:{d.offer}"] == 1 else d.id
        buckets = doc.workload(d.workload).buckets
        n = d.groups * per_group
        shares = {(d.workload, b): bucket.shares.get(d.id, 0.0) / n for b, bucket in enumerate(buckets)}
        idle_w = (d.idle_kw_per_group or 0.0) * 1000 / per_group
        busy_w = (d.busy_kw_per_group or 0.0) * 1000 / per_group
        for g in range(d.groups):
            for r in range(per_group):
                out.append(
                    SimReplica(
                        id=f"{name}#{g}" + (f".{r}" if per_group > 1 else ""),
                        group=d.id,
                        workloads=frozenset({d.workload}),
                        model=model,
                        shares=shares,
                        spot=d.spot,
                        interruption_rate_per_hour=d.interruption_rate_per_hour,
                        busy_w=busy_w,
                        idle_w=idle_w,
                        usd_per_hour=d.price.usd_per_hour / per_group,
                        grid_gco2e_per_kwh=d.grid_gco2e_per_kwh,
                    )
                )
    if len({r.id for r in out}) != len(out):
        raise SimError("two replicas share an id; this is a bug in flopex, please report it.")
    if not out:
        raise SimError("the plan deploys no replicas to simulate (is all its traffic on hosted APIs?).")
    return out


def hosted_shares(plan: Plan | PlanDocument) -> dict[tuple[str, int], float]:
    """The share of each (workload, bucket) the plan sends to hosted APIs."""
    routing: Iterable[tuple[tuple[str, int], dict[str, float]]]
    if isinstance(plan, Plan):
        hosted = {h.id for h in plan.inputs.hosted}
        routing = plan.solution.routing.items()
    else:
        hosted = {d.id for d in plan.deployments if not d.self_hosted}
        routing = (((w.name, b), bucket.shares) for w in plan.workloads for b, bucket in enumerate(w.buckets))
    out: dict[tuple[str, int], float] = {}
    for key, shares in routing:
        share = sum(v for k, v in shares.items() if k in hosted)
        if share > 0:
            out[key] = share
    return out


def split_hosted(
    requests: Sequence[Request], shares: dict[tuple[str, int], float], rng: random.Random
) -> tuple[list[Request], list[Request]]:
    """(simulated, sent to hosted APIs): each request leaves for an API with its bucket's planned share."""
    local: list[Request] = []
    away: list[Request] = []
    for r in requests:
        (away if rng.random() < shares.get((r.workload, r.bucket), 0.0) else local).append(r)
    return local, away
