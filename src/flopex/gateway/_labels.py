"""The label of one response: its cost, energy and carbon on the backend that served it."""

from __future__ import annotations

from typing import Any

from flopex.gateway._config import BackendSpec

__all__ = ["label_for"]


def label_for(spec: BackendSpec, prompt_tokens: int, completion_tokens: int, counted: str) -> dict[str, Any]:
    """Cost (USD), energy (Wh) and carbon (gCO2e) of one response on `spec`, with how each was derived."""
    if spec.hosted:
        cost = (
            prompt_tokens * (spec.usd_per_mtok_input or 0.0) + completion_tokens * (spec.usd_per_mtok_output or 0.0)
        ) / 1e6
        energy = co2e = None
    else:
        seconds = completion_tokens / spec.tokens_per_s  # the share of the backend's time the answer takes
        cost = spec.usd_per_hour / 3600 * seconds
        energy = spec.power_w * seconds / 3600
        co2e = None if spec.grid_gco2e_per_kwh is None else energy / 1000 * spec.grid_gco2e_per_kwh
    return {
        "label_schema_version": 1,
        "backend": spec.id,
        "hardware": spec.hardware,
        "region": spec.region,
        "cost_usd": cost,
        "energy_wh": energy,
        "co2e_g": co2e,
        "pue": None if spec.hosted else spec.pue,
        "grid_gco2e_per_kwh": spec.grid_gco2e_per_kwh,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens_counted_by": counted,
        "basis": spec.basis,
    }
