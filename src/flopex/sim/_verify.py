"""SLO-verified planning: a plan is replayed in the simulator on its workloads' own traffic and corrected
until it meets its attainment target, or says why it cannot.

Each round solves the plan and simulates its fleet under every chat or completion workload's traffic: its
trace when one is given, otherwise gamma-distributed gaps at the workload's declared `burstiness` (Poisson
when 1, the default), at the planned rate, with the plan's routing. Where a workload's share of requests
within its SLO falls short of the target, each of its deployments is measured: the capacity of one replica
on the mix of requests the plan routes to it, found by simulation (`measured_capacity`, under the arrivals a
replica sees when the workload's traffic is split by routing), over the capacity the analytic model gave
that mix. Every candidate that runs the same configuration (the same replica, whatever the offer) is scaled
by that ratio, and the plan is solved again. A deployment already measured on the same mix that still falls
short (bursts and uneven routing cost more than one replica shows) is derated a further step. The rounds
stop when every workload meets the target, or after `max_rounds`.

Video and agent workloads are not replayed (the simulator serves token traffic); they are listed as
unverified. Spot preemptions are not drawn here: the planner derates spot capacity by its expected loss.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from flopex.catalog import Catalog
from flopex.economics import EnergyTable
from flopex.perf import Efficiency
from flopex.plan import Candidate, Inputs, Plan, make_plan
from flopex.routing import Policy
from flopex.sim._build import group_replica, hosted_shares, replicas_from_plan, split_hosted
from flopex.sim._capacity import Length, measured_capacity, p99
from flopex.sim._engine import Completed, Request, SimOptions, simulate
from flopex.sim._traffic import generate, requests_from_trace
from flopex.workloads import ChatWorkload

__all__ = ["Check", "Round", "Verified", "VerifyOptions", "traffic_for", "verify_plan"]

TraceRows = Sequence[tuple[str, int, int]]


@dataclass(frozen=True)
class VerifyOptions:
    target: float = 0.99  # share of requests within SLO each workload must reach
    requests: int = 4000  # simulated requests per workload and round
    max_rounds: int = 8
    seed: int = 0
    derate: float = 0.85  # further factor for a deployment that still falls short on a measured mix
    measure_requests: int = 2000  # requests per trial when measuring one replica's capacity
    alternatives: int = 2  # unmeasured configurations measured beside the chosen ones of a short workload


@dataclass(frozen=True)
class Check:
    """One workload in one simulated round."""

    workload: str
    requests: int
    attainment: float
    ttft_p99_s: float
    tpot_p99_s: float
    e2e_p99_s: float
    hosted: int  # requests the plan sends to hosted APIs (not simulated)


@dataclass(frozen=True)
class Round:
    usd_per_hour: float
    checks: tuple[Check, ...]
    corrections: dict[str, float] = field(default_factory=dict)  # configuration -> capacity factor after it


@dataclass(frozen=True)
class Verified:
    plan: Plan
    rounds: tuple[Round, ...]
    target: float
    met: bool
    message: str
    unverified: tuple[str, ...]  # workloads the simulator does not replay
    factors: dict[str, float]  # configuration -> measured over modelled capacity
    kept: int = -1  # the round whose plan this is (the cheapest that held, else the last)

    @property
    def checks(self) -> tuple[Check, ...]:
        """How the returned plan did in the simulator."""
        return self.rounds[self.kept].checks if self.rounds else ()


def traffic_for(
    w: ChatWorkload, requests: int, rng: random.Random, trace: TraceRows | None = None, first_id: int = 0
) -> list[Request]:
    """The workload's own traffic: its whole trace, or `requests` synthetic arrivals at its rate and
    burstiness."""
    buckets = w.traffic.buckets()
    if trace is not None:
        out = requests_from_trace(list(trace), w.name, buckets)
        return [replace(r, id=first_id + k) for k, r in enumerate(out)]
    rate = w.traffic.requests_per_s or 0.0
    kind = "poisson" if w.traffic.burstiness == 1 else "gamma"
    return generate(kind, rate, requests / rate, w.name, buckets, rng, burstiness=w.traffic.burstiness,
                    first_id=first_id)  # fmt: skip


def _check(w: ChatWorkload, done: list[Completed], dropped: int, hosted: int) -> Check:
    """A workload's round: requests the fleet dropped (none could take them) count as missing the SLO."""
    ok = sum(1 for c in done if w.slo.met(c.ttft, c.tpot, c.e2e))
    total = len(done) + dropped
    return Check(
        w.name, total, ok / total if total else 1.0, p99([c.ttft for c in done]),
        p99([c.tpot for c in done if c.request.output_tokens > 1]), p99([c.e2e for c in done]), hosted,
    )  # fmt: skip


def _scaled(requests: int, burstiness: float) -> int:
    """Requests enough for a 1% tail: bursty arrivals fail in clumps, so a run needs more of them."""
    return round(requests * math.sqrt(max(1.0, burstiness)))


def _key(c: Candidate) -> str:
    return f"{c.workload}: {c.label}"


class _Verifier:
    """The rounds' shared state: the plan's original inputs and the capacity factors measured so far."""

    def __init__(
        self, plan: Plan, catalog: Catalog, eff: Efficiency, traces: Mapping[str, TraceRows], options: VerifyOptions
    ) -> None:
        self.catalog, self.eff, self.traces, self.options = catalog, eff, traces, options
        self.original = plan.inputs
        self.chats = {w.name: w for w in plan.workloads if isinstance(w, ChatWorkload)}
        self.factors: dict[str, float] = {}

    def simulate(self, plan: Plan) -> tuple[Check, ...]:
        """The plan's fleet under every chat workload's traffic; its attainment per workload."""
        rng = random.Random(self.options.seed)
        requests: list[Request] = []
        for w in self.chats.values():
            n = _scaled(self.options.requests, w.traffic.burstiness)
            requests += traffic_for(w, n, rng, self.traces.get(w.name), len(requests))
        requests.sort(key=lambda r: (r.arrival, r.id))
        local, away = split_hosted(requests, hosted_shares(plan), random.Random(self.options.seed + 1))
        done: dict[str, list[Completed]] = defaultdict(list)
        dropped: dict[str, int] = defaultdict(int)
        if local:
            replicas = replicas_from_plan(plan, self.catalog, self.eff)
            options = SimOptions(seed=self.options.seed, policy=Policy.plan_weighted(), spot_preemptions=False)
            result = simulate(local, replicas, options)
            for c in result.completed:
                done[c.request.workload].append(c)
            for r in result.dropped:
                dropped[r.workload] += 1
        return tuple(
            _check(w, done[w.name], dropped[w.name], sum(1 for r in away if r.workload == w.name))
            for w in self.chats.values()
        )

    def correct(self, plan: Plan, short: set[str]) -> dict[str, float]:
        """New capacity factors for the workloads that fell short: each configuration they run that has not
        been measured (on the mix the plan routes to it), and the next cheapest ones not yet measured (on the
        workload's mix, so that the next solve does not simply move to a configuration the model overrates in
        the same way); where every configuration a short workload runs was measured already, they are derated
        a step."""
        changed: dict[str, float] = {}
        cands = {c.id: c for c in plan.inputs.candidates}
        for name in sorted(short):
            w = self.chats[name]
            used = sorted({_key(cands[cid]) for cid in plan.solution.groups if cands[cid].workload == name})
            fresh = [cands[cid] for cid in sorted(plan.solution.groups)
                     if cands[cid].workload == name and _key(cands[cid]) not in self.factors]  # fmt: skip
            if not fresh:
                changed.update({key: self.factors[key] * self.options.derate for key in used})
                continue
            for c in fresh:
                if _key(c) not in changed:
                    changed[_key(c)] = self._measure(plan, c, w, self._routed(plan, c))
            for c in self._alternatives(plan, name, {_key(c) for c in fresh}):
                changed[_key(c)] = self._measure(plan, c, w)
        self.factors.update(changed)
        return changed

    def tighten(self, plan: Plan) -> dict[str, float]:
        """Measured factors for the configurations a plan that held runs and the next cheapest ones, where not
        measured yet; only those the model underrates (measured above modelled) are returned, as they may
        make a cheaper plan."""
        cands = {c.id: c for c in plan.inputs.candidates}
        changed: dict[str, float] = {}
        chosen = [cands[cid] for cid in sorted(plan.solution.groups) if cands[cid].workload in self.chats]
        for name in sorted({c.workload for c in chosen}):
            mine = [c for c in chosen if c.workload == name]
            for c in mine:
                routed = self._routed(plan, c)
                if _key(c) not in self.factors and _key(c) not in changed and any(routed):
                    replicas = plan.solution.groups[c.id] * group_replica(plan, c.id, self.catalog, self.eff)[1]
                    share = sum(routed) / sum(self._demand(plan, name)) / max(replicas, 1)
                    changed[_key(c)] = self._measure(plan, c, self.chats[name], routed, share)
            for c in self._alternatives(plan, name, {_key(c) for c in mine})[:1]:
                changed[_key(c)] = self._measure(plan, c, self.chats[name])
        self.factors.update(changed)
        return {k: f for k, f in changed.items() if f > 1.02}

    def _alternatives(self, plan: Plan, workload: str, chosen: set[str]) -> list[Candidate]:
        """The cheapest configurations of a workload, per unit of modelled capacity on its mix, that have
        not been measured."""
        weights = [b.weight for b in self.chats[workload].traffic.buckets()]
        best: dict[str, tuple[float, Candidate]] = {}
        for c in plan.inputs.candidates:
            key = _key(c)
            if c.workload != workload or key in self.factors or key in chosen or min(c.capacity) <= 0:
                continue
            price = c.usd_per_hour * sum(x / cap for x, cap in zip(weights, c.capacity, strict=True))
            if key not in best or price < best[key][0]:
                best[key] = (price, c)
        return [c for _, c in sorted(best.values(), key=lambda pc: (pc[0], pc[1].id))[: self.options.alternatives]]

    @staticmethod
    def _demand(plan: Plan, workload: str) -> tuple[float, ...]:
        return next(d for d in plan.inputs.demands if d.workload == workload).rates

    def _routed(self, plan: Plan, c: Candidate) -> tuple[float, ...]:
        """The plan's rate of each bucket sent to a candidate."""
        rates = self._demand(plan, c.workload)
        shares = [plan.solution.routing.get((c.workload, b), {}).get(c.id, 0.0) for b in range(len(rates))]
        return tuple(x * r for x, r in zip(shares, rates, strict=True))

    def _measure(
        self, plan: Plan, c: Candidate, w: ChatWorkload, mix: tuple[float, ...] | None = None, share: float = 1.0
    ) -> float:
        """Measured over modelled capacity of one group on a mix of buckets (by default the workload's, over
        the buckets the candidate can serve), one replica seeing `share` of the workload's arrivals: routing
        at random thins a stream's bursts to 1 + share·(burstiness - 1). A plan that held is measured with its
        own shares; a configuration about to be chosen is measured whole (share 1), the cautious case."""
        original = next(o for o in self.original.candidates if o.id == c.id)
        weights = mix if mix and any(mix) else tuple(b.weight for b in w.traffic.buckets())
        served = [(b, x, cap) for b, x, cap in zip(w.traffic.buckets(), weights, original.capacity, strict=True)
                  if cap > 0 and x > 0]  # fmt: skip
        lengths = [Length(b.input_tokens, b.output_tokens, x, w.slo) for b, x, _ in served]
        modelled = sum(x for _, x, _ in served) / sum(x / cap for _, x, cap in served)
        replica, per_group = group_replica(plan, c.id, self.catalog, self.eff)
        burst = 1 + min(share, 1.0) * (w.traffic.burstiness - 1)
        measured = measured_capacity(
            replica, lengths, target=self.options.target, guess=modelled / per_group, burstiness=burst,
            requests=_scaled(self.options.measure_requests, burst), seed=self.options.seed, tolerance=0.03,
        )  # fmt: skip
        return measured * per_group / modelled

    def inputs(self) -> Inputs:
        """The planner's inputs with every measured configuration's capacities scaled."""
        cands = [
            replace(c, capacity=tuple(x * self.factors[_key(c)] for x in c.capacity)) if _key(c) in self.factors else c
            for c in self.original.candidates
        ]
        return replace(self.original, candidates=cands)


def verify_plan(
    plan: Plan,
    catalog: Catalog,
    eff: Efficiency,
    energy: EnergyTable,
    traces: Mapping[str, TraceRows] | None = None,
    options: VerifyOptions = VerifyOptions(),
    progress: Callable[[str], None] | None = None,
) -> Verified:
    """Simulate `plan`, correct the capacities of the configurations that fall short, re-solve; repeat.

    Once a plan holds, the configurations it runs are measured too (if they were not): where the model
    underrates them, the plan is solved again with the measured capacities and the cheaper plan is checked
    in turn. The answer is the cheapest plan that held."""
    verifier = _Verifier(plan, catalog, eff, traces or {}, options)
    unverified = tuple(w.name for w in plan.workloads if w.name not in verifier.chats)
    rounds: list[Round] = []
    current, held, kept = plan, None, -1
    tightened = False
    for index in range(options.max_rounds):
        if not current.solution.feasible:
            break
        if progress is not None:
            progress(f"round {index + 1}: simulating ${current.solution.usd_per_hour:,.2f}/h")
        checks = verifier.simulate(current) if verifier.chats else ()
        short = {c.workload for c in checks if c.attainment < options.target}
        if not short:
            if held is None or current.solution.usd_per_hour < held.solution.usd_per_hour - 1e-9:
                held, kept = current, index
            changed = {} if tightened or not verifier.chats else verifier.tighten(current)
            tightened = True
            rounds.append(Round(current.solution.usd_per_hour, checks, changed))
            if not changed:
                break
        else:
            if progress is not None:
                progress(f"round {index + 1}: measuring {', '.join(sorted(short))}")
            rounds.append(Round(current.solution.usd_per_hour, checks, verifier.correct(current, short)))
        nxt = make_plan(current.spec, current.workloads, catalog, eff, energy, explain=False, inputs=verifier.inputs())
        if held is not None and nxt.solution.usd_per_hour >= held.solution.usd_per_hour - 1e-9:
            break  # measured capacities offer nothing cheaper than the plan that held
        current = nxt
    factors = dict(verifier.factors)
    if held is not None:
        final = make_plan(held.spec, held.workloads, catalog, eff, energy, inputs=held.inputs)
        return Verified(final, tuple(rounds), options.target, True, "", unverified, factors, kept)
    if not current.solution.feasible:
        why = f"after correcting capacities the plan is infeasible ({current.solution.message})"
        return Verified(current, tuple(rounds), options.target, False, why, unverified, factors)
    worst = min(rounds[-1].checks, key=lambda c: c.attainment)
    why = (
        f"after {len(rounds)} rounds {worst.workload} meets its SLO for {worst.attainment:.1%} of requests "
        f"(target {options.target:.0%}); its p99 TTFT is {worst.ttft_p99_s * 1e3:,.0f} ms. To fix: relax its SLO, "
        f"lower `utilisation`, or allow more offers."
    )
    return Verified(current, tuple(rounds), options.target, False, why, unverified, factors)
