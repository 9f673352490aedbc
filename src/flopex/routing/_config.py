"""The routing configuration: filters, preferences, scorers and a picker named from one registry, so that the
gateway (`flopex serve`) and the simulator (`flopex simulate --routing`) build the very same `Policy` from the
same YAML.

The default follows the plan: each backend's score is its deployment's planned share of the request's bucket
times 1/(1 + load), and the backend is drawn at random in proportion to that score. Traffic then splits as
the plan says while leaning away from a backend that has fallen behind. Backends configured by hand (no plan)
get shares in proportion to their `weight`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from flopex.routing._policy import (
    Filter,
    Picker,
    Policy,
    Scorer,
    cheapest,
    fastest,
    has_capacity,
    healthy,
    in_jurisdiction,
    kv_headroom,
    least_load,
    not_draining,
    pick_best,
    pick_two,
    pick_weighted,
    plan_share,
    prior,
    serves,
    within_slo,
)

__all__ = ["FILTERS", "PICKERS", "SCORERS", "RoutingConfig", "SloPreference"]

#: Filters by name: a backend must pass every one named in `filters` (and, where it can, every one in `prefer`).
FILTERS: dict[str, Filter] = {
    "serves": serves,
    "healthy": healthy,
    "not_draining": not_draining,
    "has_capacity": has_capacity,
    "in_jurisdiction": in_jurisdiction,
    "within_slo": within_slo,
}

#: Scorers by name, each in [0, 1] (higher is better): `plan` the planned share of the request's bucket, `load`
#: 1/(1 + load), `cost` a lower marginal cost per token, `latency` a lower expected latency, `prior` the weight,
#: `kv` free KV cache.
SCORERS: dict[str, Scorer] = {
    "plan": plan_share,
    "load": least_load,
    "cost": cheapest,
    "latency": fastest,
    "prior": prior,
    "kv": kv_headroom,
}

#: Pickers by name: `weighted` at random in proportion to score, `best` the highest score (ties to the lowest
#: id), `p2c` the better of two drawn at random.
PICKERS: dict[str, Picker] = {"weighted": pick_weighted, "best": pick_best, "p2c": pick_two}

FilterName = Literal["serves", "healthy", "not_draining", "has_capacity", "in_jurisdiction", "within_slo"]
ScorerName = Literal["plan", "load", "cost", "latency", "prior", "kv"]
PickerName = Literal["weighted", "best", "p2c"]


def _follow_the_plan() -> dict[ScorerName, float]:
    return {"plan": 1.0, "load": 1.0}


class SloPreference(BaseModel):
    """The latency the `within_slo` preference checks each backend's expected TTFT and TPOT against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_s: PositiveFloat | None = None
    tpot_s: PositiveFloat | None = None


class RoutingConfig(BaseModel):
    """How one model's requests choose a backend. Every name comes from FILTERS, SCORERS and PICKERS."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filters: tuple[FilterName, ...] = ("serves", "healthy", "not_draining", "has_capacity", "in_jurisdiction")
    prefer: tuple[FilterName, ...] = Field(
        ("within_slo",), description="soft filters: applied when at least one backend passes them"
    )
    scorers: dict[ScorerName, NonNegativeFloat] = Field(
        default_factory=_follow_the_plan,
        description="scorer -> weight; combined as a weighted sum, or a product of score**weight",
    )
    combine: Literal["product", "sum"] = "product"
    picker: PickerName = "weighted"
    prefix: NonNegativeFloat = Field(0.0, description="score bonus for the backend a prompt's prefix hashes to")
    prefix_chars: PositiveInt = Field(256, description="characters of the prompt that make its prefix")
    sample: NonNegativeInt = Field(0, description="score only this many backends, drawn by weight (0: all)")
    slo: SloPreference = SloPreference()

    def policy(self) -> Policy:
        scorers = tuple((SCORERS[name], weight) for name, weight in self.scorers.items() if weight > 0)
        return Policy(
            filters=tuple(FILTERS[name] for name in self.filters),
            scorers=scorers or ((least_load, 1.0),),
            picker=PICKERS[self.picker],
            product=self.combine == "product",
            prefix_weight=self.prefix,
            sample=self.sample,
            prefer=tuple(FILTERS[name] for name in self.prefer),
            slo=(self.slo.ttft_s, self.slo.tpot_s),
        )
