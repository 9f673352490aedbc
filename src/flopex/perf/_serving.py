"""Continuous batching in steady state: throughput, TTFT and TPOT of one replica at a given batch.

The engine runs steps of at most `max_batch_tokens` tokens per pipeline micro-batch: every decoding sequence
contributes one token and prompts fill the rest (chunked prefill). To keep B sequences decoding, B/O new
prompts of I tokens must be prefilled per step. Offline (a full queue) a step carries either a full chunk or
none, a fraction f = (B·I/O) / (max_batch_tokens - B) of steps carrying one; with requests arriving over time
each step carries the prompts that arrived during the previous one, B·I/O tokens on average.

Percentiles, as derived here:
- TPOT p99 is the 99th percentile over requests of each request's mean time per output token (as MLPerf
  and genai-perf measure it): the mean of O step times, so p99 = mean + 2.33·sigma_step/sqrt(O), where
  sigma_step comes from Poisson arrivals of prompts per step (or, offline, from the chunk/no-chunk mix).
- TTFT: half a step of waiting for the running step, the steps that prefill the prompt, the engine's
  per-request overhead, plus queueing for the prefill budget under Poisson arrivals, taken as M/M/1 with
  utilisation rho = f and service time I/chunk steps: mean wait rho·s/(1-rho); p99 wait s/(1-rho)·ln(100·rho).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flopex.models import ModelSpec
from flopex.perf._efficiency import EngineSettings
from flopex.perf._memory import Layout, MemoryPlan
from flopex.perf._step import Batch, Rates, StepTime, step_time

__all__ = ["Replica", "Steady", "closed_loop", "max_batch", "prefill_time", "steady_state"]

_Z99 = 2.326


@dataclass(frozen=True)
class Replica:
    """Everything the serving solver needs about one replica of a deployment."""

    model: ModelSpec
    layout: Layout
    rates: Rates
    memory: MemoryPlan
    engine: EngineSettings

    @property
    def token_budget(self) -> int:
        """Tokens per step: the engine's budget for each pipeline micro-batch."""
        return self.engine.max_batch_tokens * self.layout.pipeline_parallel

    @property
    def batch_limit(self) -> int:
        return self.engine.max_batch * self.layout.pipeline_parallel

    def step(self, batch: Batch) -> StepTime:
        return step_time(self.model, self.layout, self.rates, self.memory.kv_bytes_per_token, batch)


@dataclass(frozen=True)
class Steady:
    """One replica at a steady decode batch."""

    batch: float
    step: StepTime  # the mean step, for the work and utilisation figures
    tpot_s: float
    tpot_p99_s: float
    ttft_s: float
    ttft_p99_s: float
    output_tokens_per_s: float
    requests_per_s: float
    prefill_utilisation: float  # f: share of steps that carry a prompt chunk


def max_batch(rep: Replica, input_tokens: int, output_tokens: int) -> tuple[float, str]:
    """The largest steady decode batch and what limits it: 'capacity' (KV), 'engine' (max_batch) or
    'tokens' (the per-step token budget)."""
    i, o = input_tokens, output_tokens
    per_seq = i + o if rep.engine.kv_reservation == "full" else i + o / 2
    limits = {
        "capacity": rep.memory.kv_capacity_tokens / per_seq,
        "engine": float(rep.batch_limit),
        "tokens": rep.token_budget * o / (i + o),
    }
    name = min(limits, key=lambda k: limits[k])
    return max(limits[name], 0.0), name


def _mix(a: StepTime, b: StepTime, f: float) -> StepTime:
    return StepTime(
        compute_s=f * a.compute_s + (1 - f) * b.compute_s,
        memory_s=f * a.memory_s + (1 - f) * b.memory_s,
        comm_s=f * a.comm_s + (1 - f) * b.comm_s,
        overhead_s=f * a.overhead_s + (1 - f) * b.overhead_s,
        flops=f * a.flops + (1 - f) * b.flops,
        bytes=f * a.bytes + (1 - f) * b.bytes,
    )


def prefill_time(rep: Replica, input_tokens: int, decoding: float, context: float) -> float:
    """Seconds to prefill one prompt in chunks next to `decoding` sequences (no queueing, no overhead)."""
    budget = max(rep.token_budget - decoding, 1.0)
    done, total = 0.0, 0.0
    while done < input_tokens:
        chunk = min(budget, input_tokens - done)
        last = done + chunk >= input_tokens
        batch = Batch(decoding, context, chunk, chunk * (done + chunk / 2), decoding + (1 if last else 0))
        total += rep.step(batch).total_s
        done += chunk
    return total


def steady_state(
    rep: Replica, input_tokens: int, output_tokens: int, batch: float, *, queued: bool = False
) -> Steady | None:
    """The replica with `batch` sequences decoding; None if its prompts cannot keep up at that batch.

    queued (offline): prompts wait in a full queue, so a step either carries a full chunk or none.
    Otherwise (requests arriving over time) every step carries the prompts that arrived during the last one,
    B·I/O tokens on average.
    """
    i, o, b = input_tokens, output_tokens, max(batch, 1e-9)
    context = i + o / 2
    chunk = rep.token_budget - b
    if chunk <= 0:
        return None
    demand = b * i / o  # prompt tokens per step needed to keep `batch` sequences decoding
    f = demand / chunk
    if f > 1 + 1e-9:
        return None
    f = min(f, 1.0)
    plain = rep.step(Batch(b, context, 0.0, 0.0, b))
    if queued:
        full = rep.step(Batch(b, context, chunk, chunk * i / 2, b + chunk / i))
        mean = _mix(full, plain, f)
        spread = (full.total_s - plain.total_s) * math.sqrt(f * (1 - f))
    else:
        mean = rep.step(Batch(b, context, demand, demand * i / 2, b + b / o))
        # prompts per step are Poisson with mean b/o: one standard deviation more of them
        extra = min(demand + math.sqrt(b / o) * i, chunk)
        spread = rep.step(Batch(b, context, extra, extra * i / 2, b + extra / i)).total_s - mean.total_s
    t = mean.total_s
    tpot_p99 = t + _Z99 * spread / math.sqrt(o)
    service = t * i / chunk  # step time spent per prompt when prompts fill the budget
    base = t / 2 + math.ceil(i / chunk) * t + rep.engine.request_overhead_s
    rho = min(f, 0.999999)
    wait_mean = rho * service / (1 - rho)
    wait_p99 = service / (1 - rho) * math.log(100 * rho) if rho > 0.01 else 0.0
    return Steady(
        batch=b,
        step=mean,
        tpot_s=t,
        tpot_p99_s=tpot_p99,
        ttft_s=base + wait_mean,
        ttft_p99_s=base + wait_p99,
        output_tokens_per_s=b / t,
        requests_per_s=b / t / o,
        prefill_utilisation=f,
    )


def closed_loop(rep: Replica, input_tokens: int, output_tokens: int, in_flight: float) -> Steady:
    """`in_flight` requests on one replica, each sent as soon as the previous one finished.

    A request's prompt is prefilled next to the others' decoding; then it decodes among them. The decoding
    count follows from Little's law on the cycle TTFT + O·TPOT, solved by fixed-point iteration.
    """
    i, o, k = input_tokens, output_tokens, max(in_flight, 1e-9)
    context = i + o / 2
    others = ttft = 0.0
    step = rep.step(Batch(k, context, 0.0, 0.0, k))
    for _ in range(50):
        ttft = prefill_time(rep, i, others, context) + rep.engine.request_overhead_s
        decoding = max(k * o * step.total_s / (ttft + o * step.total_s), min(k, 1.0))
        rate = k / (ttft + o * step.total_s)
        # the prompt tokens of the other requests land in this request's decode steps
        chunk = max(rep.token_budget - decoding, 1.0)
        f = min(1.0, (k - 1) / k * rate * i * step.total_s / chunk) if k > 1 else 0.0
        full = rep.step(Batch(decoding, context, chunk, chunk * i / 2, decoding + chunk / i))
        plain = rep.step(Batch(decoding, context, 0.0, 0.0, decoding))
        new, previous = _mix(full, plain, f), step
        others, step = decoding * (k - 1) / k, new
        if abs(new.total_s - previous.total_s) <= 1e-9 * previous.total_s:
            break
    tpot = step.total_s
    cycle = ttft + o * tpot
    return Steady(
        batch=k * o * tpot / cycle,
        step=step,
        tpot_s=tpot,
        tpot_p99_s=tpot,
        ttft_s=ttft,
        ttft_p99_s=ttft,
        output_tokens_per_s=k * o / cycle,
        requests_per_s=k / cycle,
        prefill_utilisation=0.0,
    )
