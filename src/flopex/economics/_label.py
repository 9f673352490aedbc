"""Output labels: what one unit of output cost, used and emitted, as a versioned record rendered as JSON,
one line of text, or an SVG badge graded A-G."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict, Field

from flopex.economics._energy import EnergyTable, Unit
from flopex.economics._quote import QuoteRow

__all__ = ["LABEL_SCHEMA_VERSION", "Label", "label_for", "render_svg", "render_text"]

LABEL_SCHEMA_VERSION: Literal[1] = 1

_QUANTITY: dict[Unit, tuple[float, str]] = {
    "1k_output_tokens": (1000.0, "output tokens"),
    "video_minute": (60.0, "seconds of video"),
    "agent_hour": (1.0, "agent session-hours"),
    "run": (1.0, "training runs"),
}


class Label(BaseModel):
    """One unit of output and everything it took. Energy and carbon are absent where unknown."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_schema_version: Literal[1] = LABEL_SCHEMA_VERSION
    unit: str
    quantity: float
    quantity_of: str
    cost_usd: float
    price_basis: str
    price_source: str
    price_as_of: str | None
    hardware: dict[str, Any]
    provider: str
    region: str | None
    tokens_in: float | None = None
    tokens_out: float | None = None
    energy_wh_it: float | None = None
    energy_wh_facility: float | None = None
    pue: float | None = None
    pue_source: str | None = None
    grid_gco2e_per_kwh: float | None = None
    ci_dataset: str | None = None
    ci_year: int | None = None
    ci_basis: str | None = None
    co2e_g_operational: float | None = None
    co2e_g_embodied: float | None = None
    embodied_method: str | None = None
    method: str
    uncertainty_pct: float | None = None
    grade: str = Field(description="A-G on operational gCO2e per unit; '-' where unknown")
    grade_bands: tuple[float, ...] = ()
    generated: str


def label_for(row: QuoteRow, table: EnergyTable, mean_input_per_output: float | None = None) -> Label:
    """The label of one unit of `row`'s output (1k output tokens, a video-minute, an agent-hour or a run)."""
    fp = row.footprint
    bands = table.grades[row.unit]
    quantity, of = _QUANTITY[row.unit]
    per_unit_cost = row.usd_per_unit / 1000 if row.unit == "1k_output_tokens" else row.usd_per_unit
    hosted = row.source == "hosted"
    basis = (
        "list price per token (hosted API)"
        if hosted
        else f"{row.market} price of {row.instances} x {row.instance_type} at {row.load:.0%} of capacity"
    )
    return Label(
        unit=row.energy_unit,
        quantity=quantity,
        quantity_of=of,
        cost_usd=per_unit_cost,
        price_basis=basis,
        price_source=row.price_source,
        price_as_of=row.price_as_of,
        hardware={
            "accelerator": row.accelerator,
            "accelerators": row.accelerators,
            "instance_type": row.instance_type,
            "precision": row.precision,
            "tensor_parallel": row.tensor_parallel,
        },
        provider=row.provider,
        region=row.region,
        tokens_in=None if mean_input_per_output is None else mean_input_per_output * quantity,
        tokens_out=quantity if row.unit == "1k_output_tokens" else None,
        energy_wh_it=None if fp is None else fp.it_wh,
        energy_wh_facility=None if fp is None else fp.facility_wh,
        pue=None if fp is None else fp.pue,
        pue_source=None if fp is None else fp.pue_source,
        grid_gco2e_per_kwh=None if fp is None else fp.grid.gco2e_per_kwh,
        ci_dataset=None if fp is None else fp.grid.dataset,
        ci_year=None if fp is None else fp.grid.year,
        ci_basis=None if fp is None else fp.grid_basis,
        co2e_g_operational=None if fp is None else fp.operational_g,
        co2e_g_embodied=None if fp is None else fp.embodied_g,
        embodied_method=None if fp is None else fp.embodied_method,
        method=("not published by the provider" if hosted else "no TDP in the catalog") if fp is None else fp.method,
        uncertainty_pct=None if fp is None else fp.uncertainty_pct,
        grade="-" if fp is None else bands.grade(fp.operational_g),
        grade_bands=bands.bounds,
        generated=date.today().isoformat(),
    )


_LARGER = {"Wh": ("kWh", "MWh"), "gCO2e": ("kgCO2e", "tCO2e")}


def _g(value: float | None, unit: str, digits: int = 3) -> str:
    """`value unit` to `digits` significant figures, in kilo or mega units where they read better."""
    if value is None:
        return "unknown"
    for bigger in _LARGER.get(unit, ()):
        if abs(value) < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.{digits}g} {unit}"


def render_text(label: Label) -> str:
    """One line for logs and response headers."""
    hw = label.hardware
    where = f"{label.provider}/{label.region}" if label.region else label.provider
    hardware = f"{hw['accelerators']} x {hw['accelerator']}" if hw.get("accelerator") else "hosted"
    energy = _g(label.energy_wh_facility, "Wh")
    if label.energy_wh_it is not None:
        energy += f" (IT {label.energy_wh_it:.3g} Wh, PUE {label.pue:g})"
    carbon = _g(label.co2e_g_operational, "gCO2e")
    if label.grid_gco2e_per_kwh is not None:
        dataset = " ".join(str(x) for x in (label.ci_dataset, label.ci_year) if x)
        carbon += f" ({label.grid_gco2e_per_kwh:.0f} g/kWh {label.ci_basis}, {dataset})"
    band = "" if label.uncertainty_pct is None else f" ±{label.uncertainty_pct:g}%"
    return (
        f"flopex label v{label.label_schema_version} | per {label.unit} | ${label.cost_usd:.4g} | {energy} | "
        f"{carbon}{band} | grade {label.grade} | {hardware} {where}"
    )


_COLOURS = {
    "A": "#1a9850",
    "B": "#66bd63",
    "C": "#a6d96a",
    "D": "#fee08b",
    "E": "#fdae61",
    "F": "#f46d43",
    "G": "#d73027",
    "-": "#9e9e9e",
}


def render_svg(label: Label) -> str:
    """A 400 x 120 badge: the grade, cost, energy and carbon per unit, the hardware and the basis."""
    hw = label.hardware
    hardware = f"{hw['accelerators']} x {hw['accelerator']}" if hw.get("accelerator") else "hosted API"
    where = f"{label.provider} {label.region or ''}".strip()
    dataset = (label.ci_dataset or "n/a").split(" (")[0]
    dataset = dataset if len(dataset) <= 34 else dataset[:33] + "…"
    lines = [
        (f"${label.cost_usd:.3g} per {label.unit}", 15, "bold"),
        (f"{_g(label.energy_wh_facility, 'Wh')}  ·  {_g(label.co2e_g_operational, 'gCO2e')}", 13, "normal"),
        (f"{hardware}, {where}", 11, "normal"),
        (
            f"grid {_g(label.grid_gco2e_per_kwh, 'g/kWh', 3)} ({dataset} {label.ci_year or ''})".replace(" )", ")")
            + ("" if label.uncertainty_pct is None else f", ±{label.uncertainty_pct:g}%"),
            9,
            "normal",
        ),
    ]
    text = "".join(
        f'<text x="104" y="{26 + 24 * i}" font-size="{size}" font-weight="{weight}">{escape(line)}</text>'
        for i, (line, size, weight) in enumerate(lines)
    )
    colour = _COLOURS[label.grade]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="120" viewBox="0 0 400 120" '
        'font-family="DejaVu Sans, Verdana, sans-serif" role="img" '
        f'aria-label="flopex label: grade {escape(label.grade)}, ${label.cost_usd:.4g} per {escape(label.unit)}">'
        '<rect x="0.5" y="0.5" width="399" height="119" rx="8" fill="#ffffff" stroke="#444444"/>'
        f'<rect x="8" y="8" width="84" height="104" rx="6" fill="{colour}"/>'
        f'<text x="50" y="72" font-size="56" font-weight="bold" text-anchor="middle" fill="#ffffff">'
        f"{escape(label.grade)}</text>"
        '<text x="50" y="104" font-size="9" text-anchor="middle" fill="#ffffff">carbon grade</text>'
        f'<g fill="#222222">{text}</g>'
        f'<text x="392" y="112" font-size="8" text-anchor="end" fill="#777777">flopex label '
        f"v{label.label_schema_version}</text>"
        "</svg>"
    )
