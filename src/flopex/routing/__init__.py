"""Request routing policies (Filter -> Scorer -> Picker), shared by the simulator and the gateway."""

from __future__ import annotations

from flopex.routing._config import FILTERS, PICKERS, SCORERS, RoutingConfig, SloPreference
from flopex.routing._policy import (
    Backend,
    Policy,
    RouteRequest,
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
    prefix_affinity,
    prior,
    serves,
    within_slo,
)

__all__ = [
    "FILTERS",
    "PICKERS",
    "SCORERS",
    "RoutingConfig",
    "SloPreference",
    "Backend",
    "Policy",
    "RouteRequest",
    "cheapest",
    "fastest",
    "has_capacity",
    "healthy",
    "in_jurisdiction",
    "kv_headroom",
    "least_load",
    "not_draining",
    "pick_best",
    "pick_two",
    "pick_weighted",
    "plan_share",
    "prefix_affinity",
    "prior",
    "serves",
    "within_slo",
]
