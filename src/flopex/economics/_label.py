"""Output labels: what one request, or one unit of output, cost, used and emitted, as one versioned record
(`Label`, schema version 2) rendered as JSON, one line of text, or an SVG badge graded A-G.

The gateway labels each request (`unit: "request"`, from the backend's meter: `request_label`); `flopex quote`
and `flopex label` label one unit of a workload's output (`label_for`). Both are the same model. A version 1
record (either of the two shapes version 1 had) reads as version 2."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from xml.sax.saxutils import escape

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flopex.economics._energy import EnergyTable, GradeBands, Unit
from flopex.economics._meter import Charge, RateCard
from flopex.economics._quote import QuoteRow

__all__ = ["LABEL_SCHEMA_VERSION", "Hardware", "Label", "label_for", "render_svg", "render_text", "request_label"]

LABEL_SCHEMA_VERSION: Literal[2] = 2

_QUANTITY: dict[Unit, tuple[float, str]] = {
    "1k_output_tokens": (1000.0, "output tokens"),
    "video_minute": (60.0, "seconds of video"),
    "agent_hour": (1.0, "agent session-hours"),
    "run": (1.0, "training runs"),
}


class Hardware(BaseModel):
    """What ran it: the catalog's terms where known (a quote), else the gateway's description of the backend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str | None = None
    accelerator: str | None = None
    accelerators: int | None = None
    instance_type: str | None = None
    precision: str | None = None
    tensor_parallel: int | None = None


class Label(BaseModel):
    """One request, or one unit of output, and everything it took. Energy and carbon are None where unknown,
    with the reason in `energy_unknown` and `co2e_unknown`; never 0."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label_schema_version: Literal[2] = LABEL_SCHEMA_VERSION
    unit: str = Field(description="'request', or the unit of output: '1k output tokens', 'video-minute', ...")
    quantity: float
    quantity_of: str
    cost_usd: float
    includes_idle: bool = Field(
        description="a quote's unit cost includes the idle headroom of its last group; a request's label does not "
        "(the gateway reports idle cost per backend)"
    )
    price_basis: str
    price_source: str | None = None
    price_as_of: str | None = None
    share_basis: str | None = Field(None, description="how a request's share of its backend was found")
    backend: str | None = None
    hardware: Hardware
    provider: str | None = None
    region: str | None = None
    prompt_tokens: int | float | None = None
    completion_tokens: int | float | None = None
    tokens_counted_by: str | None = None
    held_s: float | None = Field(None, description="seconds the request was in flight on its backend")
    backend_s: float | None = Field(None, description="its share, in seconds of the whole backend")
    energy_wh_it: float | None = None
    energy_wh_facility: float | None = None
    energy_unknown: str | None = None
    pue: float | None = None
    pue_source: str | None = None
    grid_gco2e_per_kwh: float | None = None
    ci_dataset: str | None = None
    ci_year: int | None = None
    ci_basis: str | None = None
    co2e_g_operational: float | None = None
    co2e_unknown: str | None = None
    co2e_g_embodied: float | None = None
    embodied_method: str | None = None
    method: str
    uncertainty_pct: float | None = None
    grade: str = Field(description="A-G on operational gCO2e per unit (per 1k output tokens for a request)")
    grade_bands: tuple[float, ...] = ()
    generated: str

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return _from_v1(data) if isinstance(data, dict) and data.get("label_schema_version") == 1 else data


def _from_v1(old: dict[str, Any]) -> dict[str, Any]:
    """A version 1 record as version 2: the quote's label (tokens_in/out) or the gateway's (a flat record with
    `backend`, `energy_wh`, `co2e_g` and `basis`)."""
    if "backend" in old and "unit" not in old:  # the gateway's version 1 label
        hosted = old.get("energy_wh") is None
        return {
            "unit": "request", "quantity": 1.0, "quantity_of": "requests", "cost_usd": old["cost_usd"],
            "includes_idle": False, "price_basis": old.get("basis", ""), "backend": old["backend"],
            "hardware": {"description": old.get("hardware")}, "region": old.get("region"),
            "prompt_tokens": old.get("prompt_tokens"), "completion_tokens": old.get("completion_tokens"),
            "tokens_counted_by": old.get("tokens_counted_by"), "energy_wh_facility": old.get("energy_wh"),
            "energy_unknown": "the provider publishes no energy" if hosted else None, "pue": old.get("pue"),
            "grid_gco2e_per_kwh": old.get("grid_gco2e_per_kwh"), "co2e_g_operational": old.get("co2e_g"),
            "co2e_unknown": None if old.get("co2e_g") is not None else "not recorded by the version 1 label",
            "method": "version 1 gateway label: completion tokens / the backend's tokens/s x its $/h and power",
            "grade": "-", "generated": "unknown",
        }  # fmt: skip
    new = {k: v for k, v in old.items() if k not in ("label_schema_version", "tokens_in", "tokens_out")}
    new.update(prompt_tokens=old.get("tokens_in"), completion_tokens=old.get("tokens_out"), includes_idle=True)
    return new


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
    unknown = None if fp is not None else ("the provider publishes no energy" if hosted else "no TDP in the catalog")
    return Label(
        unit=row.energy_unit,
        quantity=quantity,
        quantity_of=of,
        cost_usd=per_unit_cost,
        includes_idle=not hosted,
        price_basis=basis,
        price_source=row.price_source,
        price_as_of=row.price_as_of,
        hardware=Hardware(
            accelerator=row.accelerator,
            accelerators=row.accelerators or None,
            instance_type=row.instance_type,
            precision=row.precision,
            tensor_parallel=row.tensor_parallel,
            description="hosted API" if hosted else None,
        ),
        provider=row.provider,
        region=row.region,
        prompt_tokens=None if mean_input_per_output is None else mean_input_per_output * quantity,
        completion_tokens=quantity if row.unit == "1k_output_tokens" else None,
        energy_wh_it=None if fp is None else fp.it_wh,
        energy_wh_facility=None if fp is None else fp.facility_wh,
        energy_unknown=unknown,
        pue=None if fp is None else fp.pue,
        pue_source=None if fp is None else fp.pue_source,
        grid_gco2e_per_kwh=None if fp is None else fp.grid.gco2e_per_kwh,
        ci_dataset=None if fp is None else fp.grid.dataset,
        ci_year=None if fp is None else fp.grid.year,
        ci_basis=None if fp is None else fp.grid_basis,
        co2e_g_operational=None if fp is None else fp.operational_g,
        co2e_unknown=unknown,
        co2e_g_embodied=None if fp is None else fp.embodied_g,
        embodied_method=None if fp is None else fp.embodied_method,
        method=("not published by the provider" if hosted else "no TDP in the catalog") if fp is None else fp.method,
        uncertainty_pct=None if fp is None else fp.uncertainty_pct,
        grade="-" if fp is None else bands.grade(fp.operational_g),
        grade_bands=bands.bounds,
        generated=date.today().isoformat(),
    )


_REQUEST_METHOD = (
    "the backend's facility power at its operating point while any request is in flight, split among them as "
    "the cost is; its idle power is reported apart per backend"
)


def request_label(
    charge: Charge,
    card: RateCard,
    prompt_tokens: int,
    completion_tokens: int,
    tokens_counted_by: str,
    *,
    generated: str,
    bands: GradeBands | None = None,
    uncertainty_pct: float | None = None,
) -> Label:
    """The label of one request from its backend meter's charge. The grade is on gCO2e per 1k output tokens
    (`bands`), '-' where carbon is unknown or there is no answer (an embedding)."""
    co2e = charge.co2e_g
    per_1k = None if co2e is None or completion_tokens <= 0 else co2e / completion_tokens * 1000
    return Label(
        unit="request",
        quantity=1.0,
        quantity_of="requests",
        cost_usd=charge.usd,
        includes_idle=False,
        price_basis=card.price_basis,
        share_basis=_share_basis(charge, card),
        backend=card.backend,
        hardware=Hardware(description=card.hardware),
        region=card.region,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens_counted_by=tokens_counted_by,
        held_s=charge.held_s,
        backend_s=None if card.hosted else charge.backend_s,
        energy_wh_facility=charge.wh,
        energy_unknown=charge.energy_unknown,
        pue=None if card.hosted else card.pue,
        grid_gco2e_per_kwh=card.grid_gco2e_per_kwh,
        co2e_g_operational=co2e,
        co2e_unknown=charge.co2e_unknown,
        method="list price per token; the provider publishes no energy" if card.hosted else _REQUEST_METHOD,
        uncertainty_pct=None if charge.wh is None else uncertainty_pct,
        grade="-" if per_1k is None or bands is None else bands.grade(per_1k),
        grade_bands=() if bands is None else bands.bounds,
        generated=generated,
    )


def _share_basis(charge: Charge, card: RateCard) -> str:
    if card.hosted:
        return "list price per token: prompt tokens x the input price + answer tokens x the output price"
    first = {
        "observed": f"its first token came {charge.prefill_s:.3g} s in",
        "estimated": f"its first token taken {charge.prefill_s:.3g} s in, at the backend's moving-average TTFT, "
        "since the answer was not streamed",
        "none": "no token came back, so all of it counts as prefill",
    }[charge.first_token]
    text = (
        f"its share of the backend's ${card.usd_per_hour:g}/h over the {charge.held_s:.3g} s it was in flight: the "
        "cost and power are split among the requests in flight by their work per engine step (its prompt, "
        f"about {charge.prompt_weight:,} tokens, while prefilled; one token per step while decoded); {first}; "
        "idle time is not included"
    )
    if charge.over_cap_usd > 0:
        text += f"; capped at its reservation, ${charge.over_cap_usd:.3g} of its share is unbilled"
    return text


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


def _hardware(label: Label, otherwise: str) -> str:
    hw = label.hardware
    if hw.accelerator:
        return f"{hw.accelerators} x {hw.accelerator}"
    return hw.description or otherwise


def render_text(label: Label) -> str:
    """One line for logs and response headers."""
    where = "/".join(x for x in (label.provider, label.region) if x)
    hardware = _hardware(label, "hosted")
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
    hardware = _hardware(label, "hosted API")
    where = " ".join(x for x in (label.provider, label.region) if x)
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
