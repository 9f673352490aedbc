"""A discrete-event simulation of a serving fleet at iteration level.

Each replica runs a continuous-batching scheduler like vLLM's: prompts wait in FIFO order, are admitted
while the batch has room and the KV cache has blocks, and are prefilled in chunks within a per-step token
budget next to the decoding sequences; when the cache runs out a running sequence is preempted (the newest
first) and recomputed later. Step times come from the performance model (`Replica.step`). A global router
(`flopex.routing`) places each arriving request. Between events that change a batch (an arrival, a prompt
to prefill, a sequence finishing) a replica's decode steps are identical but for context growth, so they
are advanced together, timed at the mid-point context: this is what makes an hour of traffic take seconds.

Pure: requests, replicas and options in; results out; progress reported through a callback.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flopex.perf import Batch, Replica
from flopex.routing import Backend, Policy, RouteRequest

__all__ = ["Fault", "Request", "SimOptions", "SimReplica", "SimResult", "simulate"]

_BLOCK = 16  # tokens per KV block (vLLM's default)


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
    faults: tuple[Fault, ...] = ()
    spot_preemptions: bool = True
    recovery_s: float = 120.0  # time to replace a preempted spot replica
    sample_s: float = 60.0  # time-series resolution


class _Seq:
    __slots__ = ("req", "prefilled", "generated_before", "start", "finish", "first_token", "preemptions", "target")

    def __init__(self, req: Request) -> None:
        self.req = req
        self.prefilled = 0
        self.generated_before = 0  # tokens generated before a preemption (recomputed as prompt)
        self.start = 0  # replica step count when it began decoding
        self.finish = 0  # step count at which its last token is produced
        self.first_token = -1.0
        self.preemptions = 0
        self.target = req.input_tokens  # tokens to prefill (prompt + anything generated before a preemption)


class _ReplicaState:
    __slots__ = (
        "spec", "waiting", "running", "heap", "steps", "base_ctx", "busy_until", "up", "busy_s", "energy_j",
        "kv_cap", "budget", "limit", "queue_area", "last_t", "preemptions", "served", "epoch", "inflight",
    )  # fmt: skip

    def __init__(self, spec: SimReplica) -> None:
        self.spec = spec
        self.waiting: deque[_Seq] = deque()
        self.running: dict[int, _Seq] = {}
        self.heap: list[tuple[int, int]] = []  # (finish step, request id)
        self.steps = 0
        self.base_ctx = 0  # sum over running of (context - steps): context sum = base_ctx + len(running) * steps
        self.busy_until = -1.0
        self.up = True
        self.busy_s = 0.0
        self.energy_j = 0.0
        self.kv_cap = spec.model.memory.kv_capacity_tokens
        self.budget = spec.model.token_budget
        self.limit = spec.model.batch_limit
        self.queue_area = 0.0
        self.last_t = 0.0
        self.preemptions = 0
        self.served = 0
        self.epoch = 0  # bumped when a scheduled step end is cancelled (a fault, a truncated run of decode steps)
        self.inflight: tuple[float, int, float] | None = None  # decode steps under way: (start, steps, step time)

    def context_sum(self) -> int:
        return self.base_ctx + len(self.running) * self.steps

    def kv_tokens(self) -> int:
        """Tokens of KV in use: running contexts (with half a block of slack each) plus the whole prompts
        of sequences whose prefill has begun (their blocks are reserved on admission)."""
        blocks = self.context_sum() + _BLOCK // 2 * len(self.running)
        return blocks + sum(s.target for s in self.waiting if s.prefilled)

    def snapshot(self) -> Backend:
        return Backend(
            id=self.spec.id, group=self.spec.group, workloads=self.spec.workloads, healthy=self.up,
            queued=len(self.waiting), running=len(self.running), capacity=float(self.limit),
            kv_used=self.kv_tokens() / max(self.kv_cap, 1), shares=self.spec.shares,
        )  # fmt: skip


@dataclass(frozen=True)
class Completed:
    request: Request
    replica: str
    first_token: float
    finish: float
    preemptions: int

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
    rng = random.Random(options.seed)
    states = {r.id: _ReplicaState(r) for r in replicas}
    order = list(states.values())
    events: list[tuple[float, int, int, str, int]] = []  # (time, priority, counter, replica, epoch)
    counter = 0
    arrivals = sorted(requests, key=lambda r: (r.arrival, r.id))
    pending: deque[_Seq] = deque()  # re-routed requests, as arrivals at the current time
    parked: deque[_Seq] = deque()  # requests waiting for a replica to come back
    completed: list[Completed] = []
    dropped: list[Request] = []
    spot_log: list[tuple[float, str, int]] = []
    down_until: dict[str, float] = {}
    in_system = 0
    area = 0.0
    last_event = 0.0
    steps_total = 0
    series_acc: dict[str, dict[int, list[float]]] = {r.id: {} for r in replicas}

    def push(t: float, prio: int, rid: str, epoch: int) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (t, prio, counter, rid, epoch))

    # faults: scheduled downs (priority 0), spot preemptions drawn per replica from its hourly rate
    fault_list = list(options.faults)
    horizon_guess = arrivals[-1].arrival if arrivals else 0.0
    if options.spot_preemptions:
        for r in replicas:
            if r.spot and r.interruption_rate_per_hour > 0:
                t = rng.expovariate(r.interruption_rate_per_hour / 3600)
                while t < horizon_guess:
                    fault_list.append(Fault(r.id, t, options.recovery_s))
                    t += options.recovery_s + rng.expovariate(r.interruption_rate_per_hour / 3600)
    downs = sorted(fault_list, key=lambda f: f.at)

    def sample(st: _ReplicaState, now: float) -> None:
        if now > st.last_t:
            dt = now - st.last_t
            st.queue_area += len(st.waiting) * dt
            minute = int(st.last_t // options.sample_s)
            acc = series_acc[st.spec.id].setdefault(minute, [0.0, 0.0])
            acc[0] += len(st.waiting) * dt
            st.last_t = now

    def route(seq: _Seq, now: float) -> None:
        nonlocal in_system
        req = seq.req
        backend = options.policy.route(
            [s.snapshot() for s in order], RouteRequest(req.workload, req.bucket, req.input_tokens), rng
        )
        if backend is None:
            if any(req.workload in s.spec.workloads for s in order):
                parked.append(seq)  # every replica that serves it is down: wait at the router
                return
            in_system -= 1
            dropped.append(req)
            return
        st = states[backend.id]
        if seq.target + _BLOCK > st.kv_cap:  # longer than the whole cache: the engine rejects it
            in_system -= 1
            dropped.append(req)
            return
        sample(st, now)
        _settle(st, now)
        st.waiting.append(seq)
        if st.busy_until < now:
            start_step(st, now)

    def start_step(st: _ReplicaState, now: float) -> None:
        model = st.spec.model
        running = st.running
        b = len(running)
        # admit and prefill: FIFO, within the token budget, the batch limit and the KV cache
        budget = st.budget - b
        chunk_tokens = 0
        pairs = 0.0
        finishing: list[_Seq] = []
        kv_free = st.kv_cap - st.kv_tokens() - b
        for seq in st.waiting:
            if budget <= 0 or b + len(finishing) >= st.limit:
                break
            if not seq.prefilled:  # admission reserves the whole prompt's blocks
                if seq.target + _BLOCK > kv_free:
                    break
                kv_free -= seq.target
            chunk = min(seq.target - seq.prefilled, budget)
            pairs += chunk * (seq.prefilled + chunk / 2)
            seq.prefilled += chunk
            chunk_tokens += chunk
            budget -= chunk
            if seq.prefilled >= seq.target:
                finishing.append(seq)
        # preempt the newest decoders while the cache cannot hold one more token each
        while running and st.kv_tokens() + len(running) > st.kv_cap and not chunk_tokens:
            newest = max(running.values(), key=lambda s: s.start)
            _preempt(st, newest)
            b = len(running)
        if b == 0 and chunk_tokens == 0:
            st.busy_until = -1.0
            return
        if chunk_tokens == 0:  # decode only: run until the next event that changes the batch, applied lazily
            k_finish = st.heap[0][0] - st.steps if st.heap else 1
            k_kv = max(1, (st.kv_cap - st.kv_tokens()) // b)
            k = max(1, min(k_finish, k_kv))
            t = model.step(Batch(b, st.context_sum() / b + k / 2, 0, 0.0, b)).total_s
            horizon = downs[di].at if di < len(downs) else math.inf
            if horizon < math.inf and k > 1:
                k = max(1, min(k, int((horizon - now) / t)))
            st.inflight = (now, k, t)
            _account(st, now, k * t)
            push(now + k * t, 1, st.spec.id, st.epoch)
            return
        step = model.step(Batch(b, st.context_sum() / b if b else 0.0, chunk_tokens, pairs, b + len(finishing)))
        t = step.total_s
        duration = t
        end = now + duration
        _apply_decode(st, 1, now, t)
        # prompts that finished prefill produce their first token at the end of this step
        for seq in finishing:
            st.waiting.remove(seq)
            if seq.first_token < 0:  # the engine's per-request cost (detokenising, scheduling) delays it
                seq.first_token = end + model.engine.request_overhead_s
            remaining = seq.req.output_tokens - seq.generated_before - 1
            if remaining <= 0:
                _finish(st, seq, max(end, seq.first_token))
                continue
            seq.start = st.steps
            seq.finish = st.steps + remaining
            running[seq.req.id] = seq
            st.base_ctx += seq.target + 1 - seq.start
            heapq.heappush(st.heap, (seq.finish, seq.req.id))
        _account(st, now, duration)
        push(end, 1, st.spec.id, st.epoch)

    def _account(st: _ReplicaState, now: float, duration: float) -> None:
        st.busy_s += duration
        st.energy_j += duration * st.spec.busy_w
        acc = series_acc[st.spec.id].setdefault(int(now // options.sample_s), [0.0, 0.0])
        acc[1] += duration
        st.busy_until = now + duration

    def _apply_decode(st: _ReplicaState, k: int, start: float, t: float) -> None:
        """`k` decode steps from `start`, `t` seconds each: every running sequence gains k tokens."""
        nonlocal steps_total
        before = st.steps
        st.steps += k
        steps_total += k
        while st.heap and st.heap[0][0] <= st.steps:
            _, rid = heapq.heappop(st.heap)
            seq = st.running.pop(rid)
            st.base_ctx -= seq.target + 1 - seq.start
            _finish(st, seq, max(start + (seq.finish - before) * t, seq.first_token))

    def _settle(st: _ReplicaState, now: float) -> None:
        """Apply a run of decode steps up to the step under way at `now` (an arrival changes the batch)."""
        if st.inflight is None:
            return
        start, k, t = st.inflight
        st.inflight = None
        done = min(k, max(1, math.ceil((now - start) / t - 1e-9)))
        _apply_decode(st, done, start, t)
        if done < k:  # cancel the scheduled end and give back the time not spent
            unused = (k - done) * t
            st.busy_s -= unused
            st.energy_j -= unused * st.spec.busy_w
            acc = series_acc[st.spec.id].setdefault(int(start // options.sample_s), [0.0, 0.0])
            acc[1] -= unused
            st.epoch += 1
            st.busy_until = start + done * t
            push(st.busy_until, 1, st.spec.id, st.epoch)

    def _preempt(st: _ReplicaState, seq: _Seq) -> None:
        st.running.pop(seq.req.id)
        st.heap = [(f, r) for f, r in st.heap if r != seq.req.id]
        heapq.heapify(st.heap)
        generated = st.steps - seq.start + 1
        st.base_ctx -= seq.target + 1 - seq.start
        seq.generated_before += generated
        seq.target = seq.req.input_tokens + seq.generated_before
        seq.prefilled = 0
        seq.preemptions += 1
        st.preemptions += 1
        st.waiting.appendleft(seq)

    def _finish(st: _ReplicaState, seq: _Seq, at: float) -> None:
        nonlocal in_system, area, last_event
        area += in_system * (at - last_event) if at > last_event else 0.0
        last_event = max(last_event, at)
        in_system -= 1
        st.served += 1
        completed.append(Completed(seq.req, st.spec.id, seq.first_token, at, seq.preemptions))
        if progress is not None and len(completed) % 2000 == 0:
            progress(len(completed), len(arrivals))

    ai = 0
    di = 0
    now = 0.0
    while ai < len(arrivals) or events or di < len(downs) or pending:
        t_arr = arrivals[ai].arrival if ai < len(arrivals) else math.inf
        t_evt = events[0][0] if events else math.inf
        t_down = downs[di].at if di < len(downs) else math.inf
        if pending:
            route(pending.popleft(), now)
            continue
        now = min(t_arr, t_evt, t_down)
        if now == math.inf:
            break
        if t_down <= now and t_down <= t_evt:
            fault = downs[di]
            di += 1
            st = states[fault.replica]
            if not st.up:
                continue
            sample(st, now)
            st.up = False
            st.epoch += 1
            st.inflight = None
            moved = list(st.running.values()) + list(st.waiting)
            for seq in moved:
                seq.prefilled = 0
                seq.generated_before = 0
                seq.target = seq.req.input_tokens
                seq.first_token = -1.0
                seq.preemptions += 1
                pending.append(seq)
            st.running.clear()
            st.waiting.clear()
            st.heap.clear()
            st.base_ctx = 0
            st.busy_until = -1.0
            spot_log.append((now, st.spec.id, len(moved)))
            down_until[st.spec.id] = now + fault.duration
            push(now + fault.duration, 2, st.spec.id, -1)
            continue
        if t_evt <= t_arr:
            _, prio, _, rid, epoch = heapq.heappop(events)
            st = states[rid]
            if prio == 2:  # back up: what waited at the router is routed again
                st.up = True
                pending.extend(parked)
                parked.clear()
                continue
            if epoch != st.epoch:
                continue
            sample(st, now)
            if st.inflight is not None:
                start, k, t = st.inflight
                st.inflight = None
                _apply_decode(st, k, start, t)
            start_step(st, now)
            continue
        req = arrivals[ai]
        ai += 1
        area += in_system * (now - last_event) if now > last_event else 0.0
        last_event = max(last_event, now)
        in_system += 1
        route(_Seq(req), now)
    horizon = max((c.finish for c in completed), default=0.0)
    for st in order:
        idle = max(horizon - st.busy_s, 0.0)
        st.energy_j += idle * st.spec.idle_w
        sample(st, horizon)
    series = {
        rid: [
            (m * options.sample_s, acc[0] / options.sample_s, min(acc[1] / options.sample_s, 1.0))
            for m, acc in sorted(buckets.items())
        ]
        for rid, buckets in series_acc.items()
    }
    return SimResult(
        completed=completed,
        dropped=dropped,
        horizon_s=horizon,
        replica_busy_s={st.spec.id: st.busy_s for st in order},
        replica_energy_j={st.spec.id: st.energy_j for st in order},
        preemptions={st.spec.id: st.preemptions for st in order},
        spot_preemptions=spot_log,
        in_system_area=area,
        series=series,
        steps=steps_total,
    )
