"""The planner's vocabulary: candidates, hosted APIs, demands, options and solutions, and the rules on them
that both the MILP and its pruning apply (which candidates are usable, how much of a group's capacity a plan
may load)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONSTRAINT_GROUPS",
    "Candidate",
    "Demand",
    "Hosted",
    "Options",
    "Solution",
    "carbons",
    "default_time_limit",
    "effective_utilisation",
    "excludes_unknown_energy",
    "hosted_usable",
    "usable",
]

#: Constraint groups that can be switched off to explain a plan (what each costs) or an infeasibility.
#: "unknown_power" is the rule that leaves out offers without published power (and hosted APIs without a carbon
#: factor) where carbon is capped or a power budget covers their site; it lifts only together with the cap or
#: budget that needs it.
CONSTRAINT_GROUPS: tuple[str, ...] = (
    "capacity", "power", "carbon", "domains", "on_demand_floor", "zone_share", "unknown_power",
)  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """One offer in one configuration for one workload; figures per group of `instances` instances."""

    id: str
    workload: str
    offer: str
    label: str
    usd_per_hour: float
    capacity: tuple[float, ...]  # units/s per bucket of the workload at the SLO; 0 = cannot serve it
    instances: int = 1
    spot: bool = False
    zone: str = ""
    region: str = ""
    provider: str = ""
    site: str = ""  # power-budget key
    idle_kw: float = 0.0  # facility power of a group, idle
    busy_kw: float = 0.0  # facility power of a group at full load
    grid_g_per_kwh: float = 0.0
    interruption_rate: float = 0.0  # spot: the chance per hour that an instance is interrupted (the catalog's)
    power_known: bool = True  # False where the accelerator has no published TDP
    precision: str = ""
    accelerator: str = ""  # the accelerator id ("" where unknown)
    accelerators: int = 0  # accelerators in one group
    engine: str | None = None  # the serving engine the performance model assumed (None: not an LLM engine)
    layout: tuple[int, int, int] = (0, 0, 0)  # tensor parallel, pipeline parallel, model replicas per group
    market: str = ""

    def facility_kw(self, groups: int, load: float) -> float:
        """Facility power of `groups` groups carrying `load` groups' worth of full load: idle power for every
        group, plus the rise to busy power in proportion to the load (0 where the power is unknown)."""
        return groups * self.idle_kw + (self.busy_kw - self.idle_kw) * load

    def domain(self, kind: str) -> str:
        return {"region": f"{self.provider}/{self.region}", "provider": self.provider, "zone": self.zone}[kind]


@dataclass(frozen=True)
class Hosted:
    """A token-priced API: any share of the buckets it serves, at a price per request. Its energy is never
    published; its carbon is known only where the plan gives a factor for it (`hosted_carbon`)."""

    id: str
    workload: str
    usd_per_request: tuple[float, ...]  # per bucket
    gco2e_per_request: tuple[float, ...] | None = None  # per bucket; None: unknown
    serves: tuple[bool, ...] = ()  # per bucket, whether it can be shown to meet the SLO there; () = every bucket

    def serves_bucket(self, bucket: int) -> bool:
        return not self.serves or self.serves[bucket]


@dataclass(frozen=True)
class Demand:
    workload: str
    rates: tuple[float, ...]  # units/s per bucket
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Options:
    utilisation: float = 0.9
    carbon_price_usd_per_t: float = 0.0
    carbon_cap_g_per_hour: float | None = None
    power_budget_kw: Mapping[str, float] = field(default_factory=dict)
    offer_capacity: Mapping[str, int] = field(default_factory=dict)  # instances available per offer
    min_domains: Mapping[str, int] = field(default_factory=dict)  # per workload
    domain: Literal["region", "provider", "zone"] = "region"
    on_demand_floor: float = 0.0  # share of every slice served off spot
    max_zone_share: float = 1.0  # share of a workload's traffic one zone's spot capacity may carry
    recovery_s: float = 120.0  # time to replace an interrupted spot instance (the simulator's default)
    whole: bool = False
    slice_factor: int = 1
    time_limit_s: float | None = None  # None: default_time_limit of the model's size
    mip_gap: float = 0.01
    disabled: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Solution:
    status: Literal["optimal", "time_limit", "infeasible", "error"]
    message: str
    usd_per_hour: float
    objective: float
    gap: float | None  # (objective - bound) / objective, as HiGHS reports it; None where there is no bound
    seconds: float
    groups: dict[str, int]  # candidate id -> groups
    routing: dict[tuple[str, int], dict[str, float]]  # (workload, bucket) -> {candidate or hosted id: share}
    load: dict[str, float]  # candidate id -> groups' worth of full load routed to it
    hosted_usd_per_hour: float
    energy_kwh_per_hour: float
    carbon_g_per_hour: float
    size: tuple[int, int, int]  # integer variables, continuous variables, constraints
    bound: float | None = None  # HiGHS's dual bound: no plan's objective can be lower
    time_limit_s: float = 0.0  # the limit the solver ran under (all parts together)
    # workload -> share of its served traffic (requests, videos or sessions) routed where the energy (carbon) is
    # unknown: offers without published power, and hosted APIs (whose carbon is known only from a plan factor).
    # energy_kwh_per_hour and carbon_g_per_hour count only what is known.
    energy_unknown: dict[str, float] = field(default_factory=dict)
    carbon_unknown: dict[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.status in ("optimal", "time_limit")

    @property
    def energy_unknown_share(self) -> float:
        """The share of served traffic whose energy is unknown, averaged over the workloads: 0 where
        `energy_kwh_per_hour` is complete, 1 where nothing of it is known (an all-hosted plan)."""
        return _mean(self.energy_unknown)

    @property
    def carbon_unknown_share(self) -> float:
        """As `energy_unknown_share`, for `carbon_g_per_hour`."""
        return _mean(self.carbon_unknown)


def _mean(shares: Mapping[str, float]) -> float:
    return sum(shares.values()) / len(shares) if shares else 0.0


def default_time_limit(size: tuple[int, int, int]) -> float:
    """The solver's time limit where the plan sets none: 10 s, plus 20 s per 1,000 integer variables and
    10 s per 50,000 continuous ones, up to 10 minutes. See docs/planning.md for the measurements behind it."""
    integers, continuous, _ = size
    return min(600.0, 10.0 + 20.0 * integers / 1000 + 10.0 * continuous / 50_000)


def carbons(options: Options) -> bool:
    """Whether carbon enters the problem (a price or a cap)."""
    return options.carbon_price_usd_per_t > 0 or (
        options.carbon_cap_g_per_hour is not None and "carbon" not in options.disabled
    )


def _lifted(options: Options, group: str) -> bool:
    """Whether a constraint group and the exclusion it brings are both switched off."""
    return group in options.disabled and "unknown_power" in options.disabled


def excludes_unknown_energy(options: Options) -> bool:
    """Whether offers without energy figures (and hosted APIs without a carbon factor) are left out for carbon's
    sake: a carbon price always; a carbon cap unless both the cap and the exclusion are switched off. Switching
    off the cap alone keeps them out, so that what the cap costs and what the exclusion costs are told apart."""
    return options.carbon_price_usd_per_t > 0 or (
        options.carbon_cap_g_per_hour is not None and not _lifted(options, "carbon")
    )


def hosted_usable(h: Hosted, options: Options) -> bool:
    """A hosted API without a carbon factor cannot be shown to meet a carbon price or cap; with one, it enters
    the carbon accounting like any offer."""
    return h.gco2e_per_request is not None or not excludes_unknown_energy(options)


def usable(c: Candidate, options: Options) -> bool:
    """A candidate whose power is unknown cannot be shown to meet a carbon price, cap or power budget."""
    if c.power_known:
        return True
    budget = c.site in options.power_budget_kw and not _lifted(options, "power")
    return not excludes_unknown_energy(options) and not budget


def effective_utilisation(c: Candidate, options: Options) -> float:
    """The load a group may carry, as a share of its SLO capacity: the utilisation target, less (for spot)
    the expected share of capacity lost to interruptions: the chance per hour an instance is interrupted
    x the hours it takes to replace it (`recovery_s`). At most all of it is lost."""
    lost = min(1.0, c.interruption_rate * options.recovery_s / 3600) if c.spot else 0.0
    return options.utilisation * (1 - lost)
