"""`predict_llm`: the best layout of N accelerators for a model, and its operating point in a scenario."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from flopex.catalog import Accelerator, Precision
from flopex.errors import DoesNotFitError, PerfError
from flopex.models import ModelSpec
from flopex.perf._efficiency import Efficiency, Engine, EngineSettings
from flopex.perf._memory import (
    BYTES,
    Layout,
    MemoryPlan,
    compute_precision,
    default_kv_precision,
    memory_plan,
    weight_bytes,
)
from flopex.perf._serving import Replica, Steady, closed_loop, max_batch, random_batch_limit, steady_state
from flopex.perf._step import Batch, rates_for

__all__ = [
    "SCENARIO_SLOS",
    "Bound",
    "LLMQuery",
    "Prediction",
    "Scenario",
    "parse_scenario",
    "input_share",
    "predict_llm",
    "profile",
    "replica_for",
]

Bound = Literal["compute", "memory", "capacity", "slo"]

#: Default SLOs (p99 TTFT, p99 TPOT) of the two SLO scenarios, as DESIGN.md fixes them.
SCENARIO_SLOS: dict[str, tuple[float, float]] = {"server": (2.0, 0.2), "interactive": (0.45, 0.04)}


@dataclass(frozen=True)
class Scenario:
    kind: Literal["offline", "server", "interactive", "concurrency"]
    concurrency: int = 0
    ttft_slo_s: float = math.inf
    tpot_slo_s: float = math.inf
    e2e_slo_s: float = math.inf  # p99 of TTFT + (O - 1) x TPOT, for an end-to-end SLO
    burstiness: float = 1.0  # variance of arrival counts as a multiple of Poisson's (1: Poisson)

    def __str__(self) -> str:
        return f"concurrency:{self.concurrency}" if self.kind == "concurrency" else self.kind


def parse_scenario(text: str, ttft_slo_s: float | None = None, tpot_slo_s: float | None = None) -> Scenario:
    """`offline`, `server`, `interactive` or `concurrency:K`; SLO flags override the scenario's defaults."""
    value = text.strip().lower()
    if match := re.fullmatch(r"concurrency:(\d+)", value):
        k = int(match.group(1))
        if k < 1:
            raise PerfError("--scenario concurrency:K needs K >= 1 requests in flight, e.g. concurrency:8.")
        return Scenario("concurrency", k, ttft_slo_s or math.inf, tpot_slo_s or math.inf)
    if value == "offline":
        return Scenario("offline", 0, ttft_slo_s or math.inf, tpot_slo_s or math.inf)
    if value in SCENARIO_SLOS:
        ttft, tpot = SCENARIO_SLOS[value]
        return Scenario(value, 0, ttft_slo_s or ttft, tpot_slo_s or tpot)  # type: ignore[arg-type]
    raise PerfError(
        f"--scenario {text!r} is not valid. Choose offline, server, interactive or concurrency:K (e.g. concurrency:8)."
    )


@dataclass(frozen=True)
class LLMQuery:
    """What to predict. `None` fields are chosen by flopex."""

    model: ModelSpec
    accelerator: Accelerator
    count: int
    precision: Precision
    input_tokens: int
    output_tokens: int
    scenario: Scenario = Scenario("offline")
    engine: Engine | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    kv_precision: Precision | None = None
    max_batch: int | None = None  # the engine's limit on sequences in flight (vLLM's max_num_seqs); None: its default


def engine_settings(q: LLMQuery, eff: Efficiency, engine: Engine) -> EngineSettings:
    """The engine's settings, with the query's batch limit where it gives one."""
    settings = eff.engines[engine]
    return settings if q.max_batch is None else settings.model_copy(update={"max_batch": q.max_batch})


@dataclass(frozen=True)
class Prediction:
    """The operating point of the whole deployment (all replicas)."""

    query: LLMQuery
    engine: Engine
    kv_precision: Precision
    layout: Layout
    memory: MemoryPlan
    point: Steady  # one replica
    active_replicas: int
    bound: Bound
    slo_met: bool
    peak_flops: float
    peak_bw: float

    @property
    def output_tokens_per_s(self) -> float:
        return self.point.output_tokens_per_s * self.active_replicas

    @property
    def requests_per_s(self) -> float:
        return self.point.requests_per_s * self.active_replicas

    @property
    def compute_utilization(self) -> float:
        """Share of the dense peak (compute precision) the accelerators of a busy replica use."""
        return self.point.step.flops / (self.point.step.total_s * self.peak_flops)

    @property
    def memory_utilization(self) -> float:
        return self.point.step.bytes / (self.point.step.total_s * self.peak_bw)

    def to_json(self) -> dict[str, Any]:
        q, p, m = self.query, self.point, self.memory
        return {
            "model": q.model.id,
            "accelerator": q.accelerator.id,
            "count": q.count,
            "precision": q.precision,
            "kv_precision": self.kv_precision,
            "engine": self.engine,
            "max_num_seqs": q.max_batch,
            "scenario": str(q.scenario),
            "input_tokens": q.input_tokens,
            "output_tokens": q.output_tokens,
            "output_tokens_per_s": self.output_tokens_per_s,
            "requests_per_s": self.requests_per_s,
            "ttft_s": p.ttft_s,
            "tpot_s": p.tpot_s,
            "ttft_p99_s": p.ttft_p99_s,
            "tpot_p99_s": p.tpot_p99_s,
            "batch_size": p.batch,
            "tensor_parallel": self.layout.tensor_parallel,
            "pipeline_parallel": self.layout.pipeline_parallel,
            "replicas": self.layout.replicas,
            "kv_capacity_tokens": m.kv_capacity_tokens,
            "bound": self.bound,
            "slo_met": self.slo_met,
            "ttft_slo_s": None if math.isinf(q.scenario.ttft_slo_s) else q.scenario.ttft_slo_s,
            "tpot_slo_s": None if math.isinf(q.scenario.tpot_slo_s) else q.scenario.tpot_slo_s,
            "compute_utilization": self.compute_utilization,
            "memory_utilization": self.memory_utilization,
            "memory_gb": {
                "usable": m.usable / 1e9,
                "weights": m.weights / 1e9,
                "workspace": m.workspace / 1e9,
                "kv_cache": m.kv_bytes / 1e9,
                "kv_bytes_per_token": m.kv_bytes_per_token,
            },
            "step_s": {
                "compute": p.step.compute_s,
                "memory": p.step.memory_s,
                "communication": p.step.comm_s,
                "overhead": p.step.overhead_s,
            },
        }


def replica_for(p: Prediction, eff: Efficiency) -> Replica:
    """The replica a prediction runs on, to evaluate other batches on it."""
    q = p.query
    settings = engine_settings(q, eff, p.engine)
    rates = rates_for(q.accelerator, q.precision, p.kv_precision, p.engine, settings, eff)
    return Replica(q.model, p.layout, rates, p.memory, settings)


def input_share(p: Prediction, eff: Efficiency) -> float:
    """Share of the replica's time its prompts take: what the mean step costs beyond a decode-only step."""
    rep = replica_for(p, eff)
    point = p.point
    context = p.query.input_tokens + p.query.output_tokens / 2
    plain = rep.step(Batch(point.batch, context, 0.0, 0.0, point.batch)).total_s
    return max(0.0, 1 - plain / point.step.total_s)


def _powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(max(limit, 1))) + 1)]


def _tensor_degrees(q: LLMQuery) -> list[int]:
    """Degrees that split the attention heads evenly within one scale-up domain (PCIe, up to 8, without one)."""
    domain = q.accelerator.scale_up_domain or 8
    return [t for t in _powers_of_two(min(q.count, domain)) if q.model.num_heads % t == 0]


def _layouts(q: LLMQuery) -> list[Layout]:
    """Tensor parallelism within one scale-up domain (or PCIe for cards without one), pipeline stages beyond."""
    tps = _tensor_degrees(q)
    if q.tensor_parallel:
        if q.tensor_parallel not in tps:
            raise PerfError(
                f"--tensor-parallel {q.tensor_parallel} is not possible for {q.model.id} on {q.count} x "
                f"{q.accelerator.id}: the degree must be a power of two that divides the {q.model.num_heads} "
                f"attention heads, within one scale-up domain and the count. Choose from: "
                f"{', '.join(map(str, tps))}, or leave it out and flopex chooses."
            )
        tps = [q.tensor_parallel]
    pps = [q.pipeline_parallel] if q.pipeline_parallel else _powers_of_two(q.count)
    return [Layout(t, p, q.count // (t * p)) for t in tps for p in pps if t * p <= q.count]


def _fits(q: LLMQuery, memory: MemoryPlan) -> bool:
    return memory.kv_capacity_tokens >= q.input_tokens + q.output_tokens


def _bound(point: Steady) -> Bound:
    return "compute" if point.step.compute_s >= point.step.memory_s + point.step.comm_s else "memory"


def _slo_ok(point: Steady | None, s: Scenario, output_tokens: int) -> bool:
    if point is None or point.tpot_p99_s > s.tpot_slo_s or not point.ttft_within(s.ttft_slo_s):
        return False
    return math.isinf(s.e2e_slo_s) or point.e2e_over(s.e2e_slo_s, output_tokens) <= 0.01


def _best_batch(rep: Replica, q: LLMQuery, limit: float) -> tuple[Steady, bool]:
    """The highest-throughput batch up to `limit` that meets the scenario's SLOs.

    Throughput b/t(b) grows with the batch (a step grows more slowly than the batch), so the answer is the
    largest batch within the SLOs: a scan down a log grid to the first one that meets them, then bisection
    up to the next grid point. The grid starts at a fraction of a sequence decoding on average (long prompts
    under a tight TTFT limit)."""
    i, o, s = q.input_tokens, q.output_tokens, q.scenario

    def point(b: float) -> Steady | None:
        return steady_state(rep, i, o, b, burstiness=s.burstiness)

    grid = sorted({limit * (1 - 1e-9), *(limit ** (k / 24) for k in range(24)), *(2.0**-j for j in range(1, 8))})
    above = None
    for lo in reversed(grid):
        found = point(lo)
        if _slo_ok(found, s, o):
            assert found is not None
            if above is not None:
                hi = above
                for _ in range(20):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if _slo_ok(point(mid), s, o) else (lo, mid)
                found = point(lo) or found
            return found, True
        above = lo
    fallback = point(1.0) or closed_loop(rep, i, o, 1.0)
    return fallback, False


def _operate(rep: Replica, q: LLMQuery) -> tuple[Steady, int, Bound, bool]:
    """The operating point of one replica: (point, active replicas, bound, SLO met)."""
    i, o, s = q.input_tokens, q.output_tokens, q.scenario
    limit, limiter = max_batch(rep, i, o)
    if s.kind == "concurrency":
        active = min(rep.layout.replicas, s.concurrency)
        k = s.concurrency / active
        per_seq = i + o if rep.engine.kv_reservation == "full" else i + o / 2
        k_fit = min(k, rep.batch_limit, rep.memory.kv_capacity_tokens / per_seq)
        point = closed_loop(rep, i, o, max(k_fit, 1.0))
        bound: Bound = "capacity" if k_fit < k else _bound(point)
        return point, active, bound, _slo_ok(point, s, o)
    offline = steady_state(rep, i, o, limit, queued=True)
    if offline is None:  # the token budget binds exactly at `limit`; step back a hair
        offline = steady_state(rep, i, o, limit * (1 - 1e-6), queued=True)
    assert offline is not None
    if s.kind == "offline":
        bound = "capacity" if limiter == "capacity" else _bound(offline)
        return offline, rep.layout.replicas, bound, True
    server_limit = random_batch_limit(limit, s.burstiness) if limiter != "tokens" else limit
    point, met = _best_batch(rep, q, server_limit)
    if not met:
        return point, rep.layout.replicas, "slo", False
    binding = point.output_tokens_per_s < offline.output_tokens_per_s * (1 - 1e-3)
    bound = "slo" if binding else ("capacity" if limiter == "capacity" else _bound(point))
    return point, rep.layout.replicas, bound, True


def _runs(acc: Accelerator, precision: Precision) -> bool:
    try:
        compute_precision(acc, precision)
    except PerfError:
        return False
    return True


def _does_not_fit(q: LLMQuery, eff: Efficiency, engine: Engine, kv: Precision) -> DoesNotFitError:
    """What failed, and the smallest changes that would fit: more accelerators, a narrower precision."""
    acc, model = q.accelerator, q.model
    weights = weight_bytes(model, q.precision) / 1e9
    hold = q.count * acc.memory_gb * eff.memory.reserve.value
    ideas: list[str] = []
    for n in _powers_of_two(4096):
        if n > q.count and _candidates(replace(q, count=n), eff, engine, kv):
            ideas.append(f"--count {n}")
            break
    narrower: tuple[Precision, ...] = ("fp8", "int8", "int4", "fp4")
    for p in narrower:
        if BYTES[p] < BYTES[q.precision] and _runs(acc, p):
            trial = replace(q, precision=p, kv_precision=None)
            if _candidates(trial, eff, engine, default_kv_precision(acc, p)):
                ideas.append(f"--precision {p}")
    if q.tensor_parallel or q.pipeline_parallel:
        ideas.append("leaving out --tensor-parallel so flopex chooses the layout")
    return DoesNotFitError(
        f"{model.id} at {q.precision} does not fit on {q.count} x {acc.id}: {weights:,.1f} GB of weights plus "
        f"workspace and the KV cache of one {q.input_tokens + q.output_tokens:,}-token sequence, against "
        f"{hold:,.1f} GB usable ({eff.memory.reserve.value:.0%} of {q.count} x {acc.memory_gb:g} GB). "
        + (f"What would fit: {'; or '.join(ideas)}." if ideas else "No count or precision of this accelerator fits.")
    )


def _candidates(q: LLMQuery, eff: Efficiency, engine: Engine, kv: Precision) -> list[Replica]:
    settings = engine_settings(q, eff, engine)
    rates = rates_for(q.accelerator, q.precision, kv, engine, settings, eff)
    out = []
    for layout in _layouts(q):
        mem = memory_plan(q.model, q.accelerator, q.precision, kv, layout, eff, settings)
        if layout.replicas >= 1 and _fits(q, mem):
            out.append(Replica(q.model, layout, rates, mem, settings))
    # pipeline stages only where tensor parallelism inside one domain cannot hold the model
    if not q.pipeline_parallel and any(r.layout.pipeline_parallel == 1 for r in out):
        out = [r for r in out if r.layout.pipeline_parallel == 1]
    return out


def predict_llm(q: LLMQuery, eff: Efficiency) -> Prediction:
    """The best layout (highest output throughput, then lowest TPOT) and its operating point."""
    if q.count < 1 or q.input_tokens < 1 or q.output_tokens < 1:
        raise PerfError("--count, --input-tokens and --output-tokens must each be at least 1.")
    compute_precision(q.accelerator, q.precision)
    engine = q.engine or eff.engine_for(q.accelerator)
    kv = q.kv_precision or default_kv_precision(q.accelerator, q.precision)
    if BYTES[kv] < 1:
        raise PerfError(f"--kv-precision {kv}: flopex models KV caches at 16 or 8 bits. To fix: pass fp8 or bf16.")
    compute_precision(q.accelerator, kv, "--kv-precision")
    if q.input_tokens + q.output_tokens > q.model.max_context:
        raise PerfError(
            f"{q.model.id} reads at most {q.model.max_context:,} tokens; input {q.input_tokens:,} + output "
            f"{q.output_tokens:,} is {q.input_tokens + q.output_tokens:,}. To fix: shorten the request."
        )
    replicas = _candidates(q, eff, engine, kv)
    if not replicas:
        raise _does_not_fit(q, eff, engine, kv)
    best: Prediction | None = None
    for rep in replicas:
        point, active, bound, met = _operate(rep, q)
        candidate = Prediction(
            q,
            engine,
            kv,
            rep.layout,
            rep.memory,
            point,
            active,
            bound,
            met,
            rep.rates.peak_flops,
            rep.rates.peak_bw,
        )
        if best is None or _better(candidate, best):
            best = candidate
    assert best is not None
    return best


def _better(a: Prediction, b: Prediction) -> bool:
    if a.slo_met != b.slo_met:
        return a.slo_met
    ka = (round(a.output_tokens_per_s, 6), -a.point.tpot_s)
    kb = (round(b.output_tokens_per_s, 6), -b.point.tpot_s)
    return ka > kb


def profile(
    model: ModelSpec,
    accelerator: Accelerator,
    count: int,
    precision: Precision,
    input_tokens: int,
    output_tokens: int,
    ttft_slo_s: float,
    tpot_slo_s: float,
    eff: Efficiency,
    engine: Engine | None = None,
) -> float:
    """The highest sustainable request rate (requests/s, all replicas) for one (input, output) bucket under
    p99 TTFT and TPOT limits; 0 when the SLO cannot be met or the model does not fit."""
    scenario = Scenario("server", 0, ttft_slo_s, tpot_slo_s)
    query = LLMQuery(model, accelerator, count, precision, input_tokens, output_tokens, scenario, engine)
    try:
        prediction = predict_llm(query, eff)
    except DoesNotFitError:
        return 0.0
    return prediction.requests_per_s if prediction.slo_met else 0.0
