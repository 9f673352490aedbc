"""Agent sessions: a growing context served turn by turn, with the KV cache held, offloaded or recomputed.

A session runs `turns_per_hour` turns. Turn k appends I tokens (a tool result or a user message) to the
context c_k = c_0 + (k-1)·(I+O), generates O tokens, then idles `idle_s` while a tool runs or a person thinks.
Between turns the session's KV cache is
- held in accelerator memory (the next turn prefills only its I new tokens),
- offloaded to host memory over PCIe and brought back for the next turn, or
- dropped and recomputed (the next turn prefills the whole context again).

A replica serves many sessions at once and runs out of one of two things first: compute (replica-seconds of
prefill and decode per hour) or KV memory (byte-seconds of cache held per hour). Sessions per replica is the
smaller of the two limits; the accelerator-seconds one session-hour costs follow from it.

Costs per token are marginal costs on a replica running at a decode batch B: a prefill chunk costs what it
adds to a decode step, a decode token a 1/B share of a step. The layout is the one `predict_llm` picks for
the session's mean turn under the scenario's SLOs; B is then solved so that it equals the sessions a replica
holds times the share of the hour each spends generating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from flopex.catalog import Accelerator, Precision
from flopex.errors import PerfError
from flopex.models import ModelSpec
from flopex.perf._efficiency import Efficiency, Engine
from flopex.perf._predict import LLMQuery, Prediction, Scenario, parse_scenario, predict_llm, replica_for
from flopex.perf._serving import Replica
from flopex.perf._step import Batch

__all__ = ["RETENTIONS", "AgentQuery", "AgentSession", "Retention", "SessionCost", "predict_agent"]

Retention = Literal["hold", "offload", "recompute"]
RETENTIONS: tuple[Retention, ...] = get_args(Retention)


@dataclass(frozen=True)
class AgentQuery:
    model: ModelSpec
    accelerator: Accelerator
    count: int
    precision: Precision
    turns_per_hour: float
    tokens_per_turn: int  # I: tokens appended to the context each turn
    output_per_turn: int  # O: tokens generated each turn
    idle_s: float  # between turns
    initial_tokens: int = 0  # system prompt and tool definitions
    hours: float = 1.0
    scenario: Scenario = field(default_factory=lambda: parse_scenario("server"))
    engine: Engine | None = None
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None


@dataclass(frozen=True)
class SessionCost:
    """One retention policy, per session-hour."""

    retention: Retention
    replica_seconds: float  # compute: prefill and decode on the replica
    hbm_gb_seconds: float  # KV cache held in accelerator memory
    host_gb_seconds: float  # KV cache parked in host memory
    pcie_seconds: float  # transfers out and back
    prefill_tokens: float
    mean_turn_s: float  # wall time of a turn (TTFT + decode), transfers included
    decode_batch: float  # sequences decoding on the replica alongside
    sessions_per_replica: float
    bound: Literal["compute", "memory"]
    accelerators_per_replica: int

    @property
    def accelerator_seconds(self) -> float:
        """Accelerator-seconds one session-hour takes: its share of a replica's hour."""
        return self.accelerators_per_replica * 3600 / self.sessions_per_replica

    def to_json(self) -> dict[str, Any]:
        return {
            "retention": self.retention,
            "accelerator_seconds_per_session_hour": self.accelerator_seconds,
            "replica_compute_seconds": self.replica_seconds,
            "hbm_gb_seconds": self.hbm_gb_seconds,
            "host_gb_seconds": self.host_gb_seconds,
            "pcie_seconds": self.pcie_seconds,
            "prefill_tokens": self.prefill_tokens,
            "mean_turn_s": self.mean_turn_s,
            "decode_batch": self.decode_batch,
            "sessions_per_replica": self.sessions_per_replica,
            "bound": self.bound,
        }


@dataclass(frozen=True)
class AgentSession:
    query: AgentQuery
    serving: Prediction  # the replica and operating point the costs are measured on
    costs: dict[Retention, SessionCost]
    final_context: int

    @property
    def cheapest(self) -> Retention:
        return min(self.costs, key=lambda r: self.costs[r].accelerator_seconds)

    def to_json(self, retention: Retention | None = None) -> dict[str, Any]:
        q = self.query
        chosen = retention or self.cheapest
        return {
            "model": q.model.id,
            "accelerator": q.accelerator.id,
            "count": q.count,
            "precision": q.precision,
            "turns_per_hour": q.turns_per_hour,
            "tokens_per_turn": q.tokens_per_turn,
            "output_per_turn": q.output_per_turn,
            "idle_s": q.idle_s,
            "initial_tokens": q.initial_tokens,
            "hours": q.hours,
            "final_context_tokens": self.final_context,
            "retention": chosen,
            "cheapest_retention": self.cheapest,
            "accelerator_seconds_per_session_hour": self.costs[chosen].accelerator_seconds,
            "tensor_parallel": self.serving.layout.tensor_parallel,
            "replicas": self.serving.layout.replicas,
            "kv_capacity_gb": self.serving.memory.kv_bytes / 1e9,
            "policies": {r: c.to_json() for r, c in self.costs.items()},
        }


def _prefill(rep: Replica, batch: float, context: float, new: float, prefix: float) -> tuple[float, float]:
    """(marginal replica-seconds, wall seconds) to prefill `new` tokens after `prefix` cached ones, in chunks
    next to `batch` decoding sequences."""
    budget = max(rep.token_budget - batch, 1.0)
    plain = rep.step(Batch(batch, context, 0.0, 0.0, batch)).total_s
    done = cost = wall = 0.0
    while done < new:
        chunk = min(budget, new - done)
        pairs = chunk * (prefix + done + chunk / 2)
        step = rep.step(Batch(batch, context, chunk, pairs, batch + 1)).total_s
        cost += step - plain
        wall += step
        done += chunk
    return cost, wall


def _policy_at(q: AgentQuery, rep: Replica, batch: float, retention: Retention, pcie_bytes_per_s: float) -> SessionCost:
    """Costs with `batch` sequences decoding on the replica next to this session."""
    i, o, b = q.tokens_per_turn, q.output_per_turn, batch
    kv = rep.memory.kv_bytes_per_token
    turns = q.turns_per_hour * q.hours
    whole = math.floor(turns)
    weights = [1.0] * whole + ([turns - whole] if turns > whole else [])  # a last, partial turn
    compute = hbm = host = pcie = prefilled = busy = 0.0
    for k, weight in enumerate(weights):
        before = q.initial_tokens + k * (i + o)
        new, prefix = (before + i, 0) if retention == "recompute" else (i, before)
        context = before + i + o / 2
        marginal, wall = _prefill(rep, b, context, new, prefix)
        plain = rep.step(Batch(b, context, 0.0, 0.0, b)).total_s
        # the other sessions' prompts land in this session's decode steps: b/o of them per step on average
        demand = min(b * new / o, max(rep.token_budget - b, 0.0))
        mixed = rep.step(Batch(b, context, demand, demand * (prefix + new / 2), b + b / o)).total_s
        move = 2 * before * kv / pcie_bytes_per_s if retention == "offload" and k else 0.0
        turn_s = move + wall + rep.engine.request_overhead_s + o * mixed
        compute += weight * (marginal + o * plain / b)
        prefilled += weight * new
        pcie += weight * move
        busy += weight * turn_s
        hbm += weight * context * kv * turn_s
        after = (before + i + o) * kv * q.idle_s
        if retention == "hold":
            hbm += weight * after
        elif retention == "offload":
            host += weight * after
    hours = q.hours
    by_compute = 3600 / (compute / hours)
    by_memory = rep.memory.kv_bytes * 3600 / (hbm / hours)
    return SessionCost(
        retention=retention,
        replica_seconds=compute / hours,
        hbm_gb_seconds=hbm / hours / 1e9,
        host_gb_seconds=host / hours / 1e9,
        pcie_seconds=pcie / hours,
        prefill_tokens=prefilled / hours,
        mean_turn_s=busy / turns,
        decode_batch=b,
        sessions_per_replica=min(by_compute, by_memory),
        bound="compute" if by_compute <= by_memory else "memory",
        accelerators_per_replica=rep.layout.per_replica,
    )


def _policy(q: AgentQuery, rep: Replica, start: float, retention: Retention, pcie: float) -> SessionCost:
    """Costs at a self-consistent decode batch: the sessions a replica holds times the share of each hour they
    spend decoding (fixed point from the serving model's batch, within the engine's limit)."""
    batch = start
    cost = _policy_at(q, rep, batch, retention, pcie)
    for _ in range(30):
        decoding = cost.sessions_per_replica * q.turns_per_hour * cost.mean_turn_s / 3600
        target = min(max(decoding, 1.0), float(rep.batch_limit))
        if abs(target - batch) <= 1e-3 * batch:
            break
        batch = math.sqrt(batch * target)  # damped: geometric mean of the old and new batch
        cost = _policy_at(q, rep, batch, retention, pcie)
    return cost


def predict_agent(q: AgentQuery, eff: Efficiency) -> AgentSession:
    """Accelerator-seconds and memory-seconds per session-hour for each retention policy."""
    if q.turns_per_hour <= 0 or q.hours <= 0:
        raise PerfError("--turns-per-hour and --hours must be positive.")
    if q.tokens_per_turn < 1 or q.output_per_turn < 1:
        raise PerfError("--tokens-per-turn and --output-per-turn must each be at least 1.")
    if q.idle_s < 0 or q.initial_tokens < 0:
        raise PerfError("--idle-s and --initial-tokens cannot be negative.")
    if q.turns_per_hour * q.idle_s >= 3600:
        raise PerfError(
            f"{q.turns_per_hour:g} turns per hour with {q.idle_s:g} s idle after each leave no time to work: "
            f"{q.turns_per_hour * q.idle_s:,.0f} s idle per hour. To fix: at most "
            f"{math.floor(3599 / q.idle_s) if q.idle_s else 0} turns per hour at this idle time, or a shorter --idle-s."
        )
    turns = math.ceil(q.turns_per_hour * q.hours)
    final = q.initial_tokens + turns * (q.tokens_per_turn + q.output_per_turn)
    if final > q.model.max_context:
        raise PerfError(
            f"the session's context reaches {final:,} tokens after {turns} turns; {q.model.id} reads at most "
            f"{q.model.max_context:,}. To fix: fewer --turns-per-hour, fewer tokens per turn or a shorter "
            "--hours (agents that compact their context restart it lower)."
        )
    mean_input = q.initial_tokens + (turns - 1) / 2 * (q.tokens_per_turn + q.output_per_turn) + q.tokens_per_turn
    llm = LLMQuery(
        q.model, q.accelerator, q.count, q.precision, round(mean_input), q.output_per_turn, q.scenario, q.engine,
        q.tensor_parallel, q.pipeline_parallel,
    )  # fmt: skip
    serving = predict_llm(llm, eff)
    rep = replica_for(serving, eff)
    pcie = eff.comm.pcie_gb_s.value * 1e9 / 2 * rep.layout.per_replica  # each accelerator's own link
    costs = {r: _policy(q, rep, serving.point.batch, r, pcie) for r in RETENTIONS}
    busy = costs["hold"].mean_turn_s
    if q.turns_per_hour * (busy + q.idle_s) > 3600:
        raise PerfError(
            f"turns take {busy:,.1f} s of work plus {q.idle_s:g} s idle, so {q.turns_per_hour:g} turns do not fit "
            f"in an hour. To fix: at most {math.floor(3600 / (busy + q.idle_s))} turns per hour."
        )
    return AgentSession(q, serving, costs, final)
