"""Money, energy and carbon: quotes on every offer, the meter that splits a backend's cost and energy among
its requests, output labels and tiered price sheets."""

from __future__ import annotations

from flopex.economics._energy import EnergyTable, Footprint, GradeBands, Unit, footprint, load_energy_table, power_w
from flopex.economics._label import (
    LABEL_SCHEMA_VERSION,
    Hardware,
    Label,
    label_for,
    render_svg,
    render_text,
    request_label,
)
from flopex.economics._measured import EnergyCheck, EnergyPoint, check_energy, load_energy_points, shipped_energy_points
from flopex.economics._meter import ENERGY_HOSTED, BackendMeter, Charge, MeterTotals, RateCard
from flopex.economics._pricesheet import (
    COMMIT_TIERS,
    CONTEXT_TIERS,
    LATENCY_CLASSES,
    PriceRow,
    PriceSheet,
    price_sheet,
)
from flopex.economics._quote import (
    ChatFit,
    Crossover,
    Quote,
    QuoteRow,
    agent_fit,
    agent_retention,
    chat_fit,
    quote,
    video_fit,
)
from flopex.economics._shapes import GROUP_SIZES, Shape, offer_shapes, usable_precisions, workload_offers

__all__ = [
    "GROUP_SIZES",
    "Shape",
    "offer_shapes",
    "usable_precisions",
    "workload_offers",
    "COMMIT_TIERS",
    "CONTEXT_TIERS",
    "LABEL_SCHEMA_VERSION",
    "LATENCY_CLASSES",
    "Hardware",
    "Label",
    "PriceRow",
    "PriceSheet",
    "label_for",
    "price_sheet",
    "render_svg",
    "render_text",
    "request_label",
    "ENERGY_HOSTED",
    "BackendMeter",
    "Charge",
    "MeterTotals",
    "RateCard",
    "EnergyCheck",
    "EnergyPoint",
    "check_energy",
    "load_energy_points",
    "shipped_energy_points",
    "ChatFit",
    "agent_fit",
    "agent_retention",
    "chat_fit",
    "video_fit",
    "Crossover",
    "EnergyTable",
    "Footprint",
    "GradeBands",
    "Quote",
    "QuoteRow",
    "Unit",
    "footprint",
    "load_energy_table",
    "power_w",
    "quote",
]
