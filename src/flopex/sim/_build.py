"""From a plan to simulated replicas: each deployment's groups, each group's model replicas, with the plan's
routing shares, spot exposure and power."""

from __future__ import annotations

import random
from collections.abc import Sequence

from flopex.catalog import Catalog
from flopex.economics import chat_fit
from flopex.errors import SimError
from flopex.perf import Efficiency, Replica, replica_for
from flopex.plan import Plan
from flopex.sim._engine import Request, SimReplica
from flopex.workloads import ChatWorkload

__all__ = ["group_replica", "hosted_shares", "replicas_from_plan", "split_hosted"]


def group_replica(plan: Plan, cid: str, catalog: Catalog, eff: Efficiency) -> tuple[Replica, int]:
    """The model replica a candidate's group runs, and how many of them a group holds."""
    c = next(c for c in plan.inputs.candidates if c.id == cid)
    w = next(w for w in plan.workloads if w.name == c.workload)
    if not isinstance(w, ChatWorkload):
        raise SimError(
            f"workload {w.name} is {w.kind}; the simulator replays token traffic (chat and completion workloads)."
        )
    offer = catalog.offer(c.offer)
    if offer is None:
        raise SimError(f"offer {c.offer} is not in the catalog the plan was made with.")
    acc = catalog.accelerators[offer.accelerator]
    precision = cid.split("|")[2]
    fit = chat_fit(w, acc, offer.accelerator_count, c.instances, precision, eff)  # type: ignore[arg-type]
    prediction = fit.predictions[0]
    return replica_for(prediction, eff), prediction.layout.replicas


def replicas_from_plan(plan: Plan, catalog: Catalog, eff: Efficiency) -> list[SimReplica]:
    """One `SimReplica` per model replica the plan deploys (chat and completion workloads)."""
    workloads = {w.name: w for w in plan.workloads}
    cands = {c.id: c for c in plan.inputs.candidates}
    out: list[SimReplica] = []
    for cid, groups in sorted(plan.solution.groups.items()):
        c = cands[cid]
        w = workloads[c.workload]
        model, per_group = group_replica(plan, cid, catalog, eff)
        assert isinstance(w, ChatWorkload)
        n = groups * per_group
        shares = {
            (w.name, b): plan.solution.routing.get((w.name, b), {}).get(cid, 0.0) / n
            for b in range(len(w.traffic.buckets()))
        }
        for g in range(groups):
            for r in range(per_group):
                out.append(
                    SimReplica(
                        id=f"{w.name}:{c.offer}#{g}" + (f".{r}" if per_group > 1 else ""),
                        group=cid,
                        workloads=frozenset({w.name}),
                        model=model,
                        shares=shares,
                        spot=c.spot,
                        interruption_rate_per_hour=c.interruption_rate,
                        busy_w=c.busy_kw * 1000 / per_group,
                        idle_w=c.idle_kw * 1000 / per_group,
                    )
                )
    if len({r.id for r in out}) != len(out):
        raise SimError("two replicas share an id; this is a bug in flopex, please report it.")
    if not out:
        raise SimError("the plan deploys no replicas to simulate (is all its traffic on hosted APIs?).")
    return out


def hosted_shares(plan: Plan) -> dict[tuple[str, int], float]:
    """The share of each (workload, bucket) the plan sends to hosted APIs."""
    hosted = {h.id for h in plan.inputs.hosted}
    out: dict[tuple[str, int], float] = {}
    for key, shares in plan.solution.routing.items():
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
