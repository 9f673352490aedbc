"""Arrivals: a trace in the Azure format, or Poisson, gamma-burst and diurnal generators. Pure given the
rows of a trace (the CLI reads the file) and a seeded random generator."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from datetime import datetime

from flopex.errors import SimError
from flopex.sim._engine import Request
from flopex.workloads import LengthBucket, nearest_bucket

__all__ = ["bucket_of", "generate", "requests_from_trace"]


def bucket_of(buckets: Sequence[LengthBucket], input_tokens: int) -> int:
    """The bucket whose prompt length is nearest (buckets are the plan's, sorted by input length)."""
    return nearest_bucket([b.input_tokens for b in buckets], input_tokens)


def requests_from_trace(
    rows: Sequence[tuple[str, int, int]],
    workload: str,
    buckets: Sequence[LengthBucket],
    rate_scale: float = 1.0,
    max_context: int | None = None,
) -> list[Request]:
    """Requests from (TIMESTAMP, ContextTokens, GeneratedTokens) rows; `rate_scale` 2 halves every gap."""
    if rate_scale <= 0:
        raise SimError(f"--rate-scale {rate_scale}: must be positive (2 doubles the rate).")
    if not rows:
        raise SimError("the trace has no requests.")
    times = [datetime.fromisoformat(t.strip()[:26]) for t, _, _ in rows]
    t0 = min(times)
    out = []
    for i, ((_, inp, gen), when) in enumerate(zip(rows, times, strict=True)):
        inp = max(int(inp), 1)
        gen = max(int(gen), 1)
        if max_context is not None and inp + gen > max_context:
            inp = max(1, max_context - gen)
        arrival = (when - t0).total_seconds() / rate_scale
        out.append(Request(i, arrival, workload, bucket_of(buckets, inp), inp, gen))
    out.sort(key=lambda r: (r.arrival, r.id))
    return out


def generate(
    kind: str,
    rate: float,
    duration_s: float,
    workload: str,
    buckets: Sequence[LengthBucket],
    rng: random.Random,
    *,
    burstiness: float = 4.0,
    diurnal_amplitude: float = 0.5,
    first_id: int = 0,
) -> list[Request]:
    """`poisson` (exponential gaps), `gamma` (gamma gaps with squared coefficient of variation
    `burstiness`), or `diurnal` (Poisson with rate x (1 + amplitude x sin), one cycle per `duration_s`)."""
    if rate <= 0 or duration_s <= 0:
        raise SimError("--rate and --duration must be positive.")
    weights = [b.weight for b in buckets]
    cumulative = [sum(weights[: i + 1]) for i in range(len(weights))]
    out: list[Request] = []
    t = 0.0
    peak = rate * (1 + diurnal_amplitude)
    while True:
        if kind == "poisson":
            t += rng.expovariate(rate)
        elif kind == "gamma":
            shape = 1 / burstiness
            t += rng.gammavariate(shape, 1 / (rate * shape))
        elif kind == "diurnal":
            t += rng.expovariate(peak)  # thinning: accept with rate(t) / peak
            if (
                t < duration_s
                and rng.random() > rate * (1 + diurnal_amplitude * math.sin(2 * math.pi * t / duration_s)) / peak
            ):
                continue
        else:
            raise SimError(f"--arrivals {kind!r}: choose trace, poisson, gamma or diurnal.")
        if t >= duration_s:
            break
        b = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
        b = min(b, len(buckets) - 1)
        out.append(Request(first_id + len(out), t, workload, b, buckets[b].input_tokens, buckets[b].output_tokens))
    return out
