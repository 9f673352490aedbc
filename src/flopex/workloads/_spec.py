"""Workload specs: what to serve or run, how much of it, under which SLOs and constraints.

A workload is one YAML document whose `kind` picks its shape: `chat` and `completion` (token traffic),
`video` (videos per hour), `agent` (concurrent sessions) and `training` (one run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from flopex.catalog import Market, Precision

__all__ = [
    "HOURS_PER_MONTH",
    "AgentWorkload",
    "ChatWorkload",
    "Constraints",
    "LengthBucket",
    "TokenSlo",
    "TokenTraffic",
    "TrainingWorkload",
    "VideoWorkload",
    "Workload",
    "WorkloadKind",
    "nearest_bucket",
]

WorkloadKind = Literal["chat", "completion", "video", "agent", "training"]

#: Hours in an average month (8,760 / 12).
HOURS_PER_MONTH = 730.0


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Constraints(_Strict):
    """Where and how the workload may run; every list empty means no restriction."""

    providers: tuple[str, ...] = ()
    markets: tuple[Market, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    max_gco2e_per_1k_output_tokens: PositiveFloat | None = None
    max_power_kw: PositiveFloat | None = None


class LengthBucket(_Strict):
    """One bucket of a joint histogram of request lengths."""

    input_tokens: PositiveInt
    output_tokens: PositiveInt
    weight: PositiveFloat


def nearest_bucket(input_lengths: Sequence[int], input_tokens: int) -> int:
    """The bucket a prompt of `input_tokens` belongs to: the one whose prompt length is nearest (ties to the
    first). The planner's buckets, the simulator's requests and the gateway's routing all use this rule."""
    return min(range(len(input_lengths)), key=lambda i: (abs(input_lengths[i] - input_tokens), i))


class TokenTraffic(_Strict):
    """Request rate and lengths: fixed lengths, a joint histogram, or a trace file (CSV with TIMESTAMP,
    ContextTokens and GeneratedTokens, as the Azure LLM inference traces)."""

    requests_per_s: PositiveFloat | None = None
    input_tokens: PositiveInt | None = None
    output_tokens: PositiveInt | None = None
    lengths: tuple[LengthBucket, ...] | None = Field(default=None, min_length=1)
    trace: str | None = Field(default=None, description="path, relative to the workload file")
    burstiness: float = Field(
        2.0,
        gt=0,
        le=100,
        description="how much burstier than Poisson arrivals are: the squared coefficient of variation of the gaps "
        "between them (1 is Poisson; gamma-distributed gaps otherwise). Plans are verified in the simulator under "
        "it. The default 2 lies between the Azure conversation trace's index of dispersion over 1 s (1.4) and "
        "over 10 s (4.0)",
    )

    @model_validator(mode="after")
    def _one_shape(self) -> TokenTraffic:
        fixed = self.input_tokens is not None or self.output_tokens is not None
        shapes = sum([fixed, self.lengths is not None, self.trace is not None])
        if shapes != 1:
            raise ValueError(
                "give the request lengths one way: input_tokens and output_tokens, a `lengths` histogram, "
                "or a `trace` file"
            )
        if fixed and (self.input_tokens is None or self.output_tokens is None):
            raise ValueError("input_tokens and output_tokens go together; give both")
        if self.trace is None and self.requests_per_s is None:
            raise ValueError("requests_per_s is required unless a trace gives the rate")
        return self

    def buckets(self) -> tuple[LengthBucket, ...]:
        """The lengths as weighted buckets (weights summing to 1); a trace must be read first."""
        if self.lengths is not None:
            total = sum(b.weight for b in self.lengths)
            return tuple(b.model_copy(update={"weight": b.weight / total}) for b in self.lengths)
        if self.input_tokens is not None and self.output_tokens is not None:
            return (LengthBucket(input_tokens=self.input_tokens, output_tokens=self.output_tokens, weight=1.0),)
        raise ValueError("the trace has not been read; load the workload with load_workload")

    def mean_lengths(self) -> tuple[float, float]:
        b = self.buckets()
        return sum(x.weight * x.input_tokens for x in b), sum(x.weight * x.output_tokens for x in b)


class TokenSlo(_Strict):
    """p99 time to first token and time per output token, or p99 end to end."""

    ttft_p99_s: PositiveFloat | None = None
    tpot_p99_s: PositiveFloat | None = None
    e2e_p99_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _some(self) -> TokenSlo:
        if self.e2e_p99_s is not None and (self.ttft_p99_s is not None or self.tpot_p99_s is not None):
            raise ValueError("give either e2e_p99_s or ttft_p99_s/tpot_p99_s, not both")
        return self

    def limits(self, output_tokens: float) -> tuple[float, float]:
        """(p99 TTFT, p99 TPOT) limits; an end-to-end SLO is split 10% to the first token and 90% to the rest
        (an assumption, stated in docs/quotes.md)."""
        if self.e2e_p99_s is not None:
            return 0.1 * self.e2e_p99_s, 0.9 * self.e2e_p99_s / max(output_tokens, 1.0)
        return self.ttft_p99_s or math.inf, self.tpot_p99_s or math.inf

    def met(self, ttft_s: float, tpot_s: float, e2e_s: float) -> bool:
        """Whether one request was within the SLO: its end-to-end time under an end-to-end SLO, else its
        TTFT and its mean time per output token."""
        if self.e2e_p99_s is not None:
            return e2e_s <= self.e2e_p99_s
        return ttft_s <= (self.ttft_p99_s or math.inf) and tpot_s <= (self.tpot_p99_s or math.inf)


class _Base(_Strict):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    precisions: tuple[Precision, ...] = Field(default=("fp8", "bf16"), min_length=1)
    constraints: Constraints = Constraints()
    horizon_hours_per_month: PositiveFloat = Field(HOURS_PER_MONTH, le=744)
    description: str = ""


class ChatWorkload(_Base):
    kind: Literal["chat", "completion"]
    traffic: TokenTraffic
    slo: TokenSlo = TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)


class VideoSettings(_Strict):
    width: PositiveInt | None = None
    height: PositiveInt | None = None
    frames: PositiveInt | None = None
    steps: PositiveInt | None = None
    fps: PositiveFloat | None = None


class VideoTraffic(_Strict):
    videos_per_hour: PositiveFloat


class VideoSlo(_Strict):
    max_seconds_per_video: PositiveFloat | None = None


class VideoWorkload(_Base):
    kind: Literal["video"]
    precisions: tuple[Precision, ...] = Field(default=("bf16",), min_length=1)
    video: VideoSettings = VideoSettings()
    traffic: VideoTraffic
    slo: VideoSlo = VideoSlo()


class AgentSession(_Strict):
    turns_per_hour: PositiveFloat
    tokens_per_turn: PositiveInt
    output_per_turn: PositiveInt
    idle_s: NonNegativeFloat
    initial_tokens: NonNegativeInt = 0
    retention: Literal["cheapest", "hold", "offload", "recompute"] = "cheapest"


class AgentTraffic(_Strict):
    concurrent_sessions: PositiveFloat


class AgentWorkload(_Base):
    kind: Literal["agent"]
    session: AgentSession
    traffic: AgentTraffic
    slo: TokenSlo = TokenSlo(ttft_p99_s=2.0, tpot_p99_s=0.2)


class TrainingRun(_Strict):
    tokens: PositiveFloat
    sequence_length: PositiveInt = 4096
    global_batch_tokens: PositiveFloat | None = None


class TrainingSlo(_Strict):
    deadline_days: PositiveFloat | None = None


class TrainingWorkload(_Base):
    kind: Literal["training"]
    precisions: tuple[Precision, ...] = Field(default=("bf16",), min_length=1)
    training: TrainingRun
    slo: TrainingSlo = TrainingSlo()


Workload = Annotated[ChatWorkload | VideoWorkload | AgentWorkload | TrainingWorkload, Field(discriminator="kind")]
