"""Continuous batching in steady state: throughput, TTFT and TPOT of one replica at a given batch.

This is the steady state of the engine scheduler (`flopex.perf.EngineState`, which the simulator and the
emulator run step by step), in closed form so that the planner can size thousands of candidates. The engine
runs steps of at most `max_batch_tokens` tokens per pipeline micro-batch: every decoding sequence contributes
one token and prompts fill the rest (chunked prefill). To keep B sequences decoding, B/O new prompts of I
tokens must be prefilled per step.

- Offline (a full queue) a step carries either a full chunk or none.
- Under random arrivals each prompt is prefilled whole in the step after it arrives, with the others that
  arrived during the same step: a share f of steps carries prompts, k tokens each.
- TPOT p99 is the 99th percentile over requests of each request's mean time per output token (as MLPerf
  and genai-perf measure it): the mean step plus 2.33 standard deviations of a request's mean over its O
  steps (which steps carry prompts, how many, clustered by the steps they lengthen, and the batch's drift).
- TTFT is a distribution (`_Ttft`): the rest of the step under way, the steps that prefill the prompt with
  the others that arrived beside it, a backlog when the budget overflows, the per-request overhead.
- `burstiness` makes arrival counts over-dispersed (negative binomial) for bursty traffic.
Its agreement with the simulator is tested in tests/sim/test_capacity.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np

from flopex.models import ModelSpec
from flopex.perf._efficiency import EngineSettings
from flopex.perf._memory import Layout, MemoryPlan
from flopex.perf._step import Batch, Rates, StepTime, step_time

__all__ = ["Replica", "Steady", "closed_loop", "max_batch", "prefill_time", "random_batch_limit", "steady_state"]

_Z99 = 2.326
_P99_TAIL = 0.01


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
    ttft_model: TtftTail = field(repr=False, compare=False)  # the distribution of TTFT at this point
    output_tokens_per_s: float = 0.0
    requests_per_s: float = 0.0
    prefill_utilisation: float = 0.0  # f: share of steps that carry prompt tokens

    def ttft_within(self, limit_s: float) -> bool:
        """Whether at least 99% of requests get their first token within `limit_s`."""
        return self.ttft_model.over(limit_s) <= _P99_TAIL

    @cached_property
    def ttft_s(self) -> float:
        return self.ttft_model.mean()

    @cached_property
    def ttft_p99_s(self) -> float:
        return self.ttft_model.quantile(_P99_TAIL)

    def e2e_over(self, limit_s: float, output_tokens: int) -> float:
        """P(TTFT + (O - 1)·TPOT > limit_s): a request's mean TPOT taken as normal (its p99 sets the spread)
        and independent of its TTFT."""
        n = max(output_tokens - 1, 0)
        return self.ttft_model.over(limit_s - n * self.tpot_p99_s)


class TtftTail(Protocol):
    def mean(self) -> float: ...

    def over(self, s: float) -> float: ...  # P(TTFT > s)

    def quantile(self, tail: float) -> float: ...  # the s with P(TTFT > s) = tail


@dataclass(frozen=True)
class _Known:
    """A TTFT given by its mean and p99 in closed form (a closed loop, a full queue)."""

    mean_s: float
    p99_s: float

    def mean(self) -> float:
        return self.mean_s

    def over(self, s: float) -> float:
        return 0.0 if s >= self.p99_s else 1.0  # known only by its p99: beyond it, within the 1%

    def quantile(self, tail: float) -> float:
        return self.p99_s


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


def random_batch_limit(limit: float, burstiness: float = 1.0, z: float = 1.645) -> float:
    """The mean batch whose random fluctuations stay within `limit` (sequences the KV cache or the engine
    holds): under random arrivals the number of sequences in flight varies as a count of variance c·B around
    its mean (c the burstiness, 1 for Poisson), so the limit must hold at its 95th percentile,
    B + z·sqrt(c·B) <= limit; above it admissions wait."""
    z *= math.sqrt(max(burstiness, 1.0))
    root = (-z + math.sqrt(z * z + 4 * max(limit, 0.0))) / 2
    return max(root * root, min(limit, 1.0))


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
    rep: Replica,
    input_tokens: int,
    output_tokens: int,
    batch: float,
    *,
    queued: bool = False,
    burstiness: float = 1.0,
) -> Steady | None:
    """The replica with `batch` sequences decoding; None if its prompts cannot keep up at that batch.

    queued (offline): prompts wait in a full queue, so a step either carries a full chunk or none.
    Otherwise requests arrive at random, b/O of them per step on average, and each prompt is prefilled whole
    in the step after it arrives, with the others that arrived during the same step, up to the token budget:
    with few arrivals per step a prompt gets a step of its own (and slows that one step for every decoder),
    with many they share every step. `burstiness` is how many times Poisson's variance the count of
    arrivals in a window has (1: Poisson; a gamma renewal process with squared coefficient of variation c
    has c): counts are then negative binomial, and every spread grows with it.
    """
    c = max(burstiness, 1.0)
    i, o, b = input_tokens, output_tokens, max(batch, 1e-9)
    context = i + o / 2
    chunk = rep.token_budget - b
    if chunk <= 0:
        return None
    demand = b * i / o  # prompt tokens per step needed to keep `batch` sequences decoding
    if demand > chunk * (1 + 1e-9):
        return None
    x = b / o  # prompts arriving per step
    if queued:
        k = chunk
    else:  # tokens in a step that carries prompts: the prompts that arrived in one step, given at least one
        none = math.exp(-x) if c == 1 else c ** (-x / (c - 1))  # P(no arrival in a step)
        k = min(chunk, i * x / (1 - none) if x > 1e-9 else float(i))
    f = min(demand / k, 1.0)  # share of steps that carry prompt tokens
    plain = rep.step(Batch(b, context, 0.0, 0.0, b))
    full = rep.step(Batch(b, context, k, k * i / 2, b + k / i))
    mean = _mix(full, plain, f)
    t = mean.total_s
    spread = _tpot_spread(rep, b, i, o, context, plain.total_s, full.total_s, t, k, f, c, queued)
    ttft_tail: TtftTail
    if queued:  # a prompt waits for the chunks of the prompts ahead of it
        service = t * i / chunk
        base = t / 2 + math.ceil(i / chunk) * t + rep.engine.request_overhead_s
        rho = min(f, 0.999999)
        wait_p99 = service / (1 - rho) * math.log(100 * rho) if rho > 0.01 else 0.0
        ttft_tail = _Known(base + rho * service / (1 - rho), base + wait_p99)
    else:
        model = _Ttft(rep, i, b, context, chunk, x, t, plain.total_s, c)
        ttft_tail = model
    return Steady(
        batch=b,
        step=mean,
        tpot_s=t,
        tpot_p99_s=t + _Z99 * spread,
        ttft_model=ttft_tail,
        output_tokens_per_s=b / t,
        requests_per_s=b / t / o,
        prefill_utilisation=f,
    )


def _tpot_spread(
    rep: Replica, b: float, i: int, o: int, context: float, plain_s: float, full_s: float, mean_s: float, k: float,
    f: float, c: float, queued: bool,
) -> float:  # fmt: skip
    """Standard deviation of a request's mean TPOT over its O steps.

    Prompt-carrying steps come at random (share f), and the prompts in one such step vary as arrivals do
    (c times Poisson's variance). A long step lets more prompts in for the next: each prompt begets λe more
    on average (e the time it adds to a step), so prompt work comes in clusters and its count over a
    request's life varies 1/(1 - λe)^2 times more. The decode batch drifts too (`_drift`)."""
    slope = (full_s - plain_s) / k
    spread = (full_s - plain_s) * math.sqrt(f * (1 - f)) / math.sqrt(o)
    if queued:
        return spread
    x = b / o
    lam_e = min(x / mean_s * slope * i, 0.95)
    spread = math.hypot(spread, slope * i * math.sqrt(c * x) / math.sqrt(o)) / (1 - lam_e)
    return math.hypot(spread, _drift(rep, b, o, context, plain_s, mean_s, slope * i, c))


def _drift(
    rep: Replica, b: float, o: int, context: float, plain_s: float, mean_s: float, per_prompt_s: float, c: float
) -> float:
    """Standard deviation of a request's mean TPOT from the slow drift of the decode batch.

    Under random arrivals the number of sequences decoding varies as a Poisson count (sd sqrt(cB) with
    bursts) on the
    time scale of a request's life, and a larger batch makes every step longer, which keeps sequences in
    the batch longer still: at a fixed arrival rate λ, B = λ·O·t and t grows by t_d'(B)/(1 - λe) per
    sequence (e the step time one prompt adds), a loop of gain g = λ·O·t_d'(B)/(1 - λe) that amplifies
    the drift by 1/(1 - g). A request averages over about one such period, which halves the variance.
    """
    db = max(math.sqrt(b), 1.0)
    slope = (rep.step(Batch(b + db, context, 0.0, 0.0, b + db)).total_s - plain_s) / db
    lam_e = min(b / (o * mean_s) * per_prompt_s, 0.95)
    gain = min(b / mean_s * slope / (1 - lam_e), 0.95)
    return slope * math.sqrt(c * b) / (1 - lam_e) / (1 - gain) / math.sqrt(2)


def _count_grid(mu: np.ndarray, dispersion: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(values, probabilities), one row of 8 points per mean in `mu`, standing for a count of that mean and
    variance `dispersion`·mean: Poisson (dispersion 1) or negative binomial probabilities where the mean is
    small (the rest lumped on the last point), a normal quantisation (Gauss-Hermite) where it is not."""
    mu = np.asarray(mu, dtype=float).reshape(-1)
    small = mu <= 2.0
    q = 1 / dispersion  # negative binomial: P(0) = q^r, P(k+1) = P(k)(r+k)(1-q)/(k+1); Poisson as q -> 1
    probs = np.empty((len(mu), 8))
    if q < 1:
        r = mu * q / (1 - q)
        p = q**r
        for k in range(7):
            probs[:, k] = p
            p = p * (r + k) * (1 - q) / (k + 1)
    else:
        p = np.exp(-mu)
        for k in range(7):
            probs[:, k] = p
            p = p * mu / (k + 1)
    probs[:, 7] = np.maximum(0.0, 1.0 - probs[:, :7].sum(axis=1))
    normal = np.maximum(mu[:, None] + np.sqrt(mu * dispersion)[:, None] * _NORMAL_Z, 0.0)
    values = np.where(small[:, None], _COUNTS, normal)
    return values, np.where(small[:, None], probs, _NORMAL_W)


_NORMAL_Z, _NORMAL_W = np.polynomial.hermite_e.hermegauss(8)
_NORMAL_W = _NORMAL_W / _NORMAL_W.sum()
_COUNTS = np.arange(8, dtype=float)


class _Ttft:
    """TTFT under Poisson arrivals when every step prefills the prompts that arrived during the previous one.

    A request arrives during a step of some length T (length-biased: long steps are more likely to be under
    way), waits for its end (uniform over T), then is prefilled in the next step with the a others that
    arrived during the same one (a ~ Poisson(λT)), in as many steps as their tokens take at the budget, and
    its first token comes after that step and the engine's per-request overhead. The step under way carries
    the prompts that arrived during the one before it: a long step lets more prompts arrive for the next,
    which is long in turn, so that count is over-dispersed, variance μ/(1 - (λe)^2) for e the time one
    prompt adds to a step. Prompts beyond what one step's budget takes can pile up over several steps: that
    backlog's tail is added as e^{-θq} for q prompts, θ the Cramér root of λT(e^θ - 1) = θm with m =
    budget/I prompts served per full step. The distribution is a grid of weighted points, built when first
    asked for.
    """

    __slots__ = ("_rep", "_i", "_b", "_context", "_chunk", "_lam", "_mean_s", "_plain_s", "_c", "_terms",
                 "_queue", "_decay", "_mean")  # fmt: skip

    def __init__(self, rep: Replica, i: int, b: float, context: float, chunk: float, x: float, mean_s: float,
                 plain_s: float, burstiness: float = 1.0) -> None:  # fmt: skip
        self._rep, self._i, self._b, self._context, self._chunk = rep, i, b, context, chunk
        self._c = burstiness
        self._lam, self._mean_s, self._plain_s = x / mean_s, mean_s, plain_s
        self._terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._queue = self._decay = self._mean = 0.0

    def _build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._terms is not None:
            return self._terms
        rep, i, b, context, chunk, lam = self._rep, self._i, self._b, self._context, self._chunk, self._lam
        plain_s = self._plain_s
        k_i = min(float(i), chunk)
        t_i = rep.step(Batch(b, context, k_i, k_i * k_i / 2, b + k_i / i)).total_s
        t_c = rep.step(Batch(b, context, chunk, chunk * i / 2, b + chunk / i)).total_s if chunk > i else t_i

        def step_s(tokens: np.ndarray) -> np.ndarray:  # piecewise linear through 0, one prompt, the budget
            tokens = np.minimum(tokens, chunk)
            low = plain_s + (t_i - plain_s) * tokens / k_i
            high = t_i + (t_c - t_i) * (tokens - k_i) / max(chunk - k_i, 1e-9)
            return np.where(tokens <= k_i, low, high)

        def own(others: np.ndarray) -> np.ndarray:  # from the end of the step under way to its prefill's end
            total = (others + 1) * i
            through = (others + 2) / 2 * i  # this prompt's place among them, on average
            steps = np.maximum(np.ceil(through / chunk - 1e-9), 1)
            spread = (steps - 1) * t_c + step_s(np.minimum(chunk, total - (steps - 1) * chunk))
            return np.where(total <= chunk, step_s(total), spread)

        lam_e = min(lam * (float(step_s(np.array([float(i)]))[0]) - plain_s), 0.95)
        c = self._c
        counts, probs = _count_grid(np.array([lam * self._mean_s]), c / (1 - lam_e**2))
        steps_now = step_s(counts[0] * i)  # the step under way, by the prompts it carries
        biased = probs[0] * steps_now / float(np.dot(probs[0], steps_now))
        others, q = _count_grid(lam * steps_now, c)  # arrivals during it, one row per length
        delays = own(others) + rep.engine.request_overhead_s
        terms = ((biased[:, None] * q).ravel(), np.repeat(steps_now, 8), delays.ravel())
        m = chunk / i
        arrivals = lam * t_c
        self._queue = min(arrivals / m, 1.0)
        # bursts: a tail c times longer (heavy traffic); a budget filled below 5% builds no backlog
        self._decay = _cramer(arrivals, m) * m / t_c / c if self._queue > 0.05 else math.inf
        self._mean = float(np.dot(terms[0], terms[1] / 2 + terms[2]))
        self._terms = terms
        return terms

    def mean(self) -> float:
        self._build()
        return self._mean

    def over(self, s: float) -> float:
        """P(TTFT > s)."""
        w, t, d = self._build()
        p = float(np.dot(w, np.clip(1.0 - (s - d) / t, 0.0, 1.0)))
        if self._decay < math.inf:
            p += self._queue * math.exp(-self._decay * max(s - self._mean, 0.0))
        return p

    def quantile(self, tail: float) -> float:
        _, t, d = self._build()
        if self._queue >= 1.0:
            return math.inf
        lo, hi = 0.0, float(np.max(d + t))
        while self.over(hi) > tail:
            lo, hi = hi, hi * 2
            if hi > 1e5:
                return math.inf
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.over(mid) <= tail else (mid, hi)
        return hi


def _cramer(a: float, m: float) -> float:
    """θ > 0 with a(e^θ - 1) = θm: the decay rate of a queue fed Poisson(a) prompts a step and served m."""
    if a <= 0:
        return math.inf
    if a >= m:
        return 0.0
    theta = min(max(2 * (m - a) / a, 1e-6), 700.0)
    for _ in range(60):  # Newton on g(θ) = a(e^θ - 1) - θm, convex with g(0) = 0 and g'(0) < 0
        g = a * math.expm1(theta) - theta * m
        dg = a * math.exp(theta) - m
        new = theta - g / dg if dg > 0 else theta / 2
        new = theta / 2 if new <= 0 else min(new, 700.0)
        if abs(new - theta) <= 1e-9 * theta:
            return new
        theta = new
    return theta


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
        ttft_model=_Known(ttft, ttft),
        output_tokens_per_s=k * o / cycle,
        requests_per_s=k / cycle,
        prefill_utilisation=0.0,
    )
