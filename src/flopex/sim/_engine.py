"""A discrete-event simulation of a serving fleet at iteration level.

Each replica runs the engine scheduler of `flopex.perf` (`EngineState`: FIFO admission within the batch
limit and the KV cache, chunked prefill beside the decoding batch, preemption of the newest decoder when
the cache runs out), the same one `flopex emulate` runs on a real clock. Step times come from the
performance model (`Replica.step`). A global router (`flopex.routing`) places each arriving request. Between
events that change a batch (an arrival, a prompt to prefill, a sequence finishing) a replica's decode steps
are identical but for context growth, so they are advanced together, timed at the mid-point context: this
is what makes an hour of traffic take seconds. Routing looks only at the replicas that serve the request's
workload, through one list of snapshots per workload in which only the replicas that changed since the last
arrival are replaced.

Pure: requests, replicas and options in; results out; progress reported through a callback.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flopex.perf import Batch, EngineState, Replica, Seq
from flopex.routing import Backend, Policy, RouteRequest

__all__ = ["Fault", "Request", "SimOptions", "SimReplica", "SimResult", "simulate"]


@dataclass(frozen=True)
class Request:
    id: int
    arrival: float
    workload: str
    bucket: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class SimReplica:
    """One model replica of a deployment, with the performance model of its configuration."""

    id: str
    group: str  # deployment (plan candidate)
    workloads: frozenset[str]
    model: Replica
    shares: dict[tuple[str, int], float]
    spot: bool = False
    interruption_rate_per_hour: float = 0.0
    busy_w: float = 0.0  # facility watts when stepping
    idle_w: float = 0.0
    usd_per_hour: float = 0.0  # what the replica costs (labels split it among its requests: `sim.report`)
    grid_gco2e_per_kwh: float | None = None


@dataclass(frozen=True)
class Fault:
    """A replica that goes down at `at` seconds for `duration` seconds (its requests are re-routed)."""

    replica: str
    at: float
    duration: float


@dataclass(frozen=True)
class SimOptions:
    seed: int = 0
    policy: Policy = field(default_factory=Policy.plan_weighted)
    policies: Mapping[str, Policy] = field(default_factory=dict)  # per workload, in place of `policy`
    faults: tuple[Fault, ...] = ()
    spot_preemptions: bool = True
    recovery_s: float = 120.0  # time to replace a preempted spot replica
    sample_s: float = 60.0  # time-series resolution


class _Seq(Seq):
    __slots__ = ("req", "first_token", "placed")

    def __init__(self, req: Request) -> None:
        super().__init__(req.id, req.input_tokens, req.output_tokens)
        self.req = req
        self.first_token = -1.0
        self.placed = req.arrival  # when it was put on the replica that serves it (later if re-routed)


class _ReplicaState:
    __slots__ = (
        "spec", "engine", "busy_until", "up", "busy_s", "energy_j", "queue_area", "last_t", "served", "epoch",
        "inflight", "slots", "_snapshot",
    )  # fmt: skip

    def __init__(self, spec: SimReplica) -> None:
        self.spec = spec
        self.engine = EngineState(spec.model)
        self.busy_until = -1.0
        self.up = True
        self.busy_s = 0.0
        self.energy_j = 0.0
        self.queue_area = 0.0
        self.last_t = 0.0
        self.served = 0
        self.epoch = 0  # bumped when a scheduled step end is cancelled (a fault, a truncated run of decode steps)
        self.inflight: tuple[float, int, float] | None = None  # decode steps under way: (start, steps, step time)
        self.slots: list[tuple[list[Backend], int]] = []  # where its snapshot sits in the routing pools
        self._snapshot: Backend | None = None

    def snapshot(self) -> Backend:
        """What the router sees; rebuilt only after `touch` (the replica changed)."""
        if self._snapshot is None:
            e = self.engine
            self._snapshot = Backend(
                id=self.spec.id, group=self.spec.group, workloads=self.spec.workloads, healthy=self.up,
                queued=len(e.waiting), running=len(e.running), capacity=float(e.limit),
                kv_used=e.kv_tokens() / max(e.kv_cap, 1), shares=self.spec.shares,
            )  # fmt: skip
        return self._snapshot

    def touch(self) -> bool:
        """Forget the snapshot; True when it was current (the replica has just gone stale)."""
        fresh = self._snapshot is not None
        self._snapshot = None
        return fresh


@dataclass(frozen=True)
class Completed:
    request: Request
    replica: str
    first_token: float
    finish: float
    preemptions: int
    placed: float = -1.0  # when it was put on `replica` (its arrival unless a fault moved it); -1: not recorded

    @property
    def ttft(self) -> float:
        return self.first_token - self.request.arrival

    @property
    def e2e(self) -> float:
        return self.finish - self.request.arrival

    @property
    def tpot(self) -> float:
        n = self.request.output_tokens - 1
        return (self.finish - self.first_token) / n if n > 0 else 0.0


@dataclass(frozen=True)
class SimResult:
    completed: list[Completed]
    dropped: list[Request]  # no backend could take them
    horizon_s: float
    replica_busy_s: dict[str, float]
    replica_energy_j: dict[str, float]
    preemptions: dict[str, int]  # KV-cache preemptions per replica
    spot_preemptions: list[tuple[float, str, int]]  # (time, replica, requests re-routed)
    in_system_area: float  # integral of requests in the system over time (for Little's law)
    series: dict[str, list[tuple[float, float, float]]]  # replica -> (minute start, mean queue, busy share)
    steps: int


def simulate(
    requests: Sequence[Request],
    replicas: Sequence[SimReplica],
    options: SimOptions,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Replay `requests` (sorted by arrival) against `replicas`; every request runs to completion."""
    return _Sim(requests, replicas, options, progress).run()


class _Sim:
    """One run: the event heap, the replicas' states and what is measured."""

    def __init__(
        self,
        requests: Sequence[Request],
        replicas: Sequence[SimReplica],
        options: SimOptions,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.options = options
        self.progress = progress
        self.rng = random.Random(options.seed)
        self.states = {r.id: _ReplicaState(r) for r in replicas}
        self.order = list(self.states.values())
        self.pools: dict[str, list[Backend]] = {}  # workload -> snapshots of the replicas that serve it
        for st in self.order:
            for w in sorted(st.spec.workloads):
                pool = self.pools.setdefault(w, [])
                st.slots.append((pool, len(pool)))
                pool.append(st.snapshot())
        self.stale: list[_ReplicaState] = []  # replicas changed since their snapshots were last put in the pools
        self.events: list[tuple[float, int, int, str, int]] = []  # (time, priority, counter, replica, epoch)
        self.counter = 0
        self.arrivals = sorted(requests, key=lambda r: (r.arrival, r.id))
        self.pending: deque[_Seq] = deque()  # re-routed requests, as arrivals at the current time
        self.parked: deque[_Seq] = deque()  # requests waiting for a replica to come back
        self.completed: list[Completed] = []
        self.dropped: list[Request] = []
        self.spot_log: list[tuple[float, str, int]] = []
        self.in_system = 0
        self.area = 0.0
        self.last_event = 0.0
        self.steps_total = 0
        self.series_acc: dict[str, dict[int, list[float]]] = {r.id: {} for r in replicas}
        self.downs = self._downs(replicas)
        self.di = 0

    def _downs(self, replicas: Sequence[SimReplica]) -> list[Fault]:
        """Scheduled faults, and spot preemptions drawn per replica at its offer's hourly interruption rate."""
        faults = list(self.options.faults)
        horizon = self.arrivals[-1].arrival if self.arrivals else 0.0
        if self.options.spot_preemptions:
            for r in replicas:
                if r.spot and r.interruption_rate_per_hour > 0:
                    t = self.rng.expovariate(r.interruption_rate_per_hour / 3600)
                    while t < horizon:
                        faults.append(Fault(r.id, t, self.options.recovery_s))
                        t += self.options.recovery_s + self.rng.expovariate(r.interruption_rate_per_hour / 3600)
        return sorted(faults, key=lambda f: f.at)

    def push(self, t: float, prio: int, rid: str, epoch: int) -> None:
        self.counter += 1
        heapq.heappush(self.events, (t, prio, self.counter, rid, epoch))

    def sample(self, st: _ReplicaState, now: float) -> None:
        if now > st.last_t:
            dt = now - st.last_t
            queued = len(st.engine.waiting)
            st.queue_area += queued * dt
            minute = int(st.last_t // self.options.sample_s)
            self.series_acc[st.spec.id].setdefault(minute, [0.0, 0.0])[0] += queued * dt
            st.last_t = now

    def touch(self, st: _ReplicaState) -> None:
        """The replica changed: its snapshot is rebuilt, and replaced in the pools, at the next routing."""
        if st.touch():
            self.stale.append(st)

    def _refresh(self) -> None:
        for st in self.stale:
            snapshot = st.snapshot()
            for pool, i in st.slots:
                pool[i] = snapshot
        self.stale.clear()

    def route(self, seq: _Seq, now: float) -> None:
        req = seq.req
        if self.stale:
            self._refresh()
        pool = self.pools.get(req.workload, [])
        policy = self.options.policies.get(req.workload, self.options.policy)
        backend = policy.route(pool, RouteRequest(req.workload, req.bucket, req.input_tokens), self.rng)
        if backend is None:
            if pool:
                self.parked.append(seq)  # every replica that serves it is down: wait at the router
                return
            self.in_system -= 1
            self.dropped.append(req)
            return
        st = self.states[backend.id]
        if not st.engine.fits(seq):  # longer than the whole cache: the engine rejects it
            self.in_system -= 1
            self.dropped.append(req)
            return
        self.sample(st, now)
        self._settle(st, now)
        seq.placed = now
        st.engine.add(seq)
        self.touch(st)
        if st.busy_until < now:
            self.start_step(st, now)

    def start_step(self, st: _ReplicaState, now: float) -> None:
        engine = st.engine
        self.touch(st)
        step = engine.next_step()
        if step is None:
            st.busy_until = -1.0
            return
        model = st.spec.model
        if step.decode_only:  # run until the next event that changes the batch, applied lazily
            b = len(engine.running)
            k = engine.decode_run()
            t = model.step(Batch(b, engine.context_sum() / b + k / 2, 0, 0.0, b)).total_s
            horizon = self.downs[self.di].at if self.di < len(self.downs) else math.inf
            if horizon < math.inf and k > 1:
                k = max(1, min(k, int((horizon - now) / t)))
            st.inflight = (now, k, t)
            self._account(st, now, k * t)
            self.push(now + k * t, 1, st.spec.id, st.epoch)
            return
        t = model.step(step.batch).total_s
        end = now + t
        self._apply_decode(st, 1, now, t)
        for seq in step.finishing:  # prompts that finished prefill produce their first token at the step's end
            assert isinstance(seq, _Seq)
            if seq.first_token < 0:  # the engine's per-request cost (detokenising, scheduling) delays it
                seq.first_token = end + model.engine.request_overhead_s
        for seq in engine.start_decoding(step.finishing):
            assert isinstance(seq, _Seq)
            self._finish(st, seq, max(end, seq.first_token))
        self._account(st, now, t)
        self.push(end, 1, st.spec.id, st.epoch)

    def _account(self, st: _ReplicaState, now: float, duration: float) -> None:
        st.busy_s += duration
        st.energy_j += duration * st.spec.busy_w
        self.series_acc[st.spec.id].setdefault(int(now // self.options.sample_s), [0.0, 0.0])[1] += duration
        st.busy_until = now + duration

    def _apply_decode(self, st: _ReplicaState, k: int, start: float, t: float) -> None:
        """`k` decode steps from `start`, `t` seconds each: every running sequence gains k tokens."""
        self.steps_total += k
        for seq, at in st.engine.advance(k):
            assert isinstance(seq, _Seq)
            self._finish(st, seq, max(start + at * t, seq.first_token))
        self.touch(st)

    def _settle(self, st: _ReplicaState, now: float) -> None:
        """Apply a run of decode steps up to the step under way at `now` (an arrival changes the batch)."""
        if st.inflight is None:
            return
        start, k, t = st.inflight
        st.inflight = None
        done = min(k, max(1, math.ceil((now - start) / t - 1e-9)))
        self._apply_decode(st, done, start, t)
        if done < k:  # cancel the scheduled end and give back the time not spent
            unused = (k - done) * t
            st.busy_s -= unused
            st.energy_j -= unused * st.spec.busy_w
            self.series_acc[st.spec.id].setdefault(int(start // self.options.sample_s), [0.0, 0.0])[1] -= unused
            st.epoch += 1
            st.busy_until = start + done * t
            self.push(st.busy_until, 1, st.spec.id, st.epoch)

    def _finish(self, st: _ReplicaState, seq: _Seq, at: float) -> None:
        self.area += self.in_system * (at - self.last_event) if at > self.last_event else 0.0
        self.last_event = max(self.last_event, at)
        self.in_system -= 1
        st.served += 1
        self.completed.append(Completed(seq.req, st.spec.id, seq.first_token, at, seq.preemptions, seq.placed))
        if self.progress is not None and len(self.completed) % 2000 == 0:
            self.progress(len(self.completed), len(self.arrivals))

    def _fault(self, now: float) -> None:
        fault = self.downs[self.di]
        self.di += 1
        st = self.states[fault.replica]
        if not st.up:
            return
        self.sample(st, now)
        st.up = False
        st.epoch += 1
        st.inflight = None
        moved = st.engine.clear()
        for seq in moved:
            assert isinstance(seq, _Seq)
            seq.first_token = -1.0
            self.pending.append(seq)
        self.touch(st)
        st.busy_until = -1.0
        self.spot_log.append((now, st.spec.id, len(moved)))
        self.push(now + fault.duration, 2, st.spec.id, -1)

    def _event(self, now: float) -> None:
        _, prio, _, rid, epoch = heapq.heappop(self.events)
        st = self.states[rid]
        if prio == 2:  # back up: what waited at the router is routed again
            st.up = True
            self.touch(st)
            self.pending.extend(self.parked)
            self.parked.clear()
            return
        if epoch != st.epoch:
            return
        self.sample(st, now)
        if st.inflight is not None:
            start, k, t = st.inflight
            st.inflight = None
            self._apply_decode(st, k, start, t)
        self.start_step(st, now)

    def run(self) -> SimResult:
        ai = 0
        now = 0.0
        arrivals, events, downs = self.arrivals, self.events, self.downs
        while ai < len(arrivals) or events or self.di < len(downs) or self.pending:
            if self.pending:
                self.route(self.pending.popleft(), now)
                continue
            t_arr = arrivals[ai].arrival if ai < len(arrivals) else math.inf
            t_evt = events[0][0] if events else math.inf
            t_down = downs[self.di].at if self.di < len(downs) else math.inf
            now = min(t_arr, t_evt, t_down)
            if now == math.inf:
                break
            if t_down <= now and t_down <= t_evt:
                self._fault(now)
            elif t_evt <= t_arr:
                self._event(now)
            else:
                req = arrivals[ai]
                ai += 1
                self.area += self.in_system * (now - self.last_event) if now > self.last_event else 0.0
                self.last_event = max(self.last_event, now)
                self.in_system += 1
                self.route(_Seq(req), now)
        return self._result()

    def _result(self) -> SimResult:
        horizon = max((c.finish for c in self.completed), default=0.0)
        for st in self.order:
            st.energy_j += max(horizon - st.busy_s, 0.0) * st.spec.idle_w
            self.sample(st, horizon)
        sample_s = self.options.sample_s
        series = {
            rid: [(m * sample_s, acc[0] / sample_s, min(acc[1] / sample_s, 1.0)) for m, acc in sorted(b.items())]
            for rid, b in self.series_acc.items()
        }
        return SimResult(
            completed=self.completed,
            dropped=self.dropped,
            horizon_s=horizon,
            replica_busy_s={st.spec.id: st.busy_s for st in self.order},
            replica_energy_j={st.spec.id: st.energy_j for st in self.order},
            preemptions={st.spec.id: st.engine.preemptions for st in self.order},
            spot_preemptions=self.spot_log,
            in_system_area=self.area,
            series=series,
            steps=self.steps_total,
        )
