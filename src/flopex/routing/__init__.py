"""Request routing policies (Filter -> Scorer -> Picker), shared by the simulator and the gateway."""

from __future__ import annotations

from flopex.routing._policy import (
    Backend,
    Policy,
    RouteRequest,
    healthy,
    kv_headroom,
    least_load,
    pick_best,
    pick_weighted,
    plan_share,
    serves,
)

__all__ = [
    "Backend",
    "Policy",
    "RouteRequest",
    "healthy",
    "kv_headroom",
    "least_load",
    "pick_best",
    "pick_weighted",
    "plan_share",
    "serves",
]
