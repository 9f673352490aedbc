"""From a plan to simulated replicas: each deployment's groups, each group's model replicas, with the plan's
routing shares, spot exposure and power."""

from __future__ import annotations

from flopex.catalog import Catalog
from flopex.economics import chat_fit
from flopex.errors import SimError
from flopex.perf import Efficiency, replica_for
from flopex.plan import Plan
from flopex.sim._engine import SimReplica
from flopex.workloads import ChatWorkload

__all__ = ["replicas_from_plan"]


def replicas_from_plan(plan: Plan, catalog: Catalog, eff: Efficiency) -> list[SimReplica]:
    """One `SimReplica` per model replica the plan deploys (chat and completion workloads)."""
    workloads = {w.name: w for w in plan.workloads}
    cands = {c.id: c for c in plan.inputs.candidates}
    out: list[SimReplica] = []
    for cid, groups in sorted(plan.solution.groups.items()):
        c = cands[cid]
        w = workloads[c.workload]
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
        model = replica_for(prediction, eff)
        per_group = prediction.layout.replicas
        n = groups * per_group
        shares = {
            (w.name, b): plan.solution.routing.get((w.name, b), {}).get(cid, 0.0) / n
            for b in range(len(w.traffic.buckets()))
        }
        for g in range(groups):
            for r in range(per_group):
                out.append(
                    SimReplica(
                        id=f"{c.offer}#{g}.{r}" if per_group > 1 else f"{c.offer}#{g}",
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
    if not out:
        raise SimError("the plan deploys no replicas to simulate (is all its traffic on hosted APIs?).")
    return out
