"""`flopex quote`, `flopex label` and `flopex pricesheet`: money, energy and carbon for a workload."""

from __future__ import annotations

import csv
import io
import json as jsonlib
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from flopex.catalog import Catalog
from flopex.cli._common import (
    CalibrationOption,
    CatalogOption,
    JsonOption,
    catalog_for,
    choose,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
)
from flopex.economics import (
    Label,
    Quote,
    QuoteRow,
    label_for,
    load_energy_table,
    price_sheet,
    quote,
    render_svg,
    render_text,
)
from flopex.errors import FlopexError
from flopex.perf import Band, load_bands
from flopex.workloads import ChatWorkload, Workload, load_workload

__all__ = ["label", "pricesheet", "quote_command"]

WorkloadArg = Annotated[Path, typer.Argument(help="A workload YAML (see examples/ and `flopex workload schema`).")]
MarketGridOption = Annotated[
    float | None,
    typer.Option(
        "--market-gco2e-per-kwh",
        min=0.0,
        help="Market-based grid factor to use instead of each region's location-based one (e.g. from a PPA).",
    ),
]


def _load(file: Path) -> Workload:
    try:
        return load_workload(file)
    except FlopexError as exc:
        fail(str(exc))


def _quote(w: Workload, catalog: Catalog, calibration: list[Path] | None, market: float | None) -> Quote:
    try:
        return quote(w, catalog, efficiency_for(calibration), load_energy_table(), market_gco2e_per_kwh=market)
    except FlopexError as exc:
        fail(str(exc))


def _mean_in_per_out(w: Workload) -> float | None:
    if isinstance(w, ChatWorkload):
        mean_in, mean_out = w.traffic.mean_lengths()
        return mean_in / mean_out
    return None


def _label(row: QuoteRow, w: Workload) -> Label:
    """The label of one unit of the row's output. Where the accelerator publishes no power (TPU, Trainium)
    the footprint is unknown, and `label_for` takes the grid from the footprint only; the region's grid is
    known all the same, so the label carries it from the row (energy and carbon stay unknown)."""
    lab = label_for(row, load_energy_table(), _mean_in_per_out(w))
    if lab.grid_gco2e_per_kwh is None and row.grid is not None:
        grid = row.grid
        lab = lab.model_copy(update={"grid_gco2e_per_kwh": grid.gco2e_per_kwh, "ci_dataset": grid.dataset,
                                     "ci_year": grid.year, "ci_basis": row.grid_basis})  # fmt: skip
    return lab


def _row_json(row: QuoteRow, w: Workload, confidence: float = 0.8) -> dict[str, Any]:
    out = {**row.to_json(), "label": _label(row, w).model_dump(mode="json")}
    band = _band(w)
    if row.source == "offer" and band is not None:  # a hosted API's price per token does not move with speed
        low, high = band.interval(row.usd_per_unit, confidence)
        out["usd_per_unit_interval"] = {"low": low, "high": high, "basis": _interval_basis(band, confidence)}
    return out


_REGIME = {"chat": "LLM throughput", "completion": "LLM throughput", "agent": "LLM throughput", "video": "video",
           "training": "training"}  # fmt: skip


def _band(w: Workload) -> Band | None:
    """The out-of-sample error band of what a self-hosted unit's cost rests on: the throughput of its regime."""
    regime = _REGIME.get(w.kind)
    return None if regime is None else load_bands()[regime]


def _interval_basis(band: Band, confidence: float) -> str:
    return f"a unit's cost scales with 1/throughput: {band.basis(confidence)}"


_CSV_COLUMNS = (
    "source", "offer", "accelerator", "precision", "tensor_parallel", "instances", "load", "usd_per_hour", "unit",
    "usd_per_unit", "usd_per_mtok_input", "usd_per_mtok_output", "slo_met", "why", "energy_unit", "wh_per_unit",
    "gco2e_per_unit", "power_kw", "violations",
)  # fmt: skip


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "violations": "; ".join(r["violations"])})
    return buffer.getvalue()


def _num(v: float | None, fmt: str = ",.3g") -> str:
    return "-" if v is None else format(v, fmt)


def _table(q: Quote, top: int) -> Table:
    w = q.workload
    unit = q.rows[0].unit_name if q.rows else ""
    energy_unit = q.rows[0].energy_unit if q.rows else ""
    table = Table(
        title=f"Quote for {w.name} ({w.kind}, {w.model}): {len(q.rows)} offers, best first", header_style="bold"
    )
    columns = ["#", "offer", "config", "instances", "$/hour", f"$/{unit}"]
    if isinstance(w, ChatWorkload):
        columns += ["$/1M in", "$/1M out"]
    columns += ["SLO", f"Wh/{energy_unit}", f"gCO2e/{energy_unit}", "kW"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("offer", "config", "SLO") else "right", overflow="fold")
    for i, r in enumerate(q.rows[:top], start=1):
        config = (
            "hosted API"
            if r.source == "hosted"
            else f"{r.accelerator} {r.precision}" + (f" TP{r.tensor_parallel}" if r.tensor_parallel else "")
        )
        slo = {True: "met", False: "NOT met", None: "unknown"}[r.slo_met]
        if r.violations:
            slo += "; " + "; ".join(r.violations)
        elif r.slo_met is not True:
            slo += f": {r.why}"
        cells = [str(i), r.offer_id, config, str(r.instances) if r.instances else "-", f"${r.usd_per_hour:,.2f}",
                 f"${r.usd_per_unit:,.4g}"]  # fmt: skip
        if isinstance(w, ChatWorkload):
            cells += [f"${_num(r.usd_per_mtok_input)}", f"${_num(r.usd_per_mtok_output)}"]
        cells += [slo, _num(r.wh_per_unit), _num(r.gco2e_per_unit), _num(r.power_kw, ",.1f")]
        table.add_row(*cells, style=None if r.eligible else "dim")
    return table


def quote_command(
    file: WorkloadArg,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows to show.")] = 15,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    market_gco2e_per_kwh: MarketGridOption = None,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
    confidence: Annotated[
        float, typer.Option("--confidence", min=0.5, max=0.99, help="Two-sided confidence of the cost intervals.")
    ] = 0.8,
    json: JsonOption = False,
) -> None:
    """Cost, SLO, energy and carbon of a workload on every offer that can serve it, ranked; hosted APIs too."""
    w = _load(file)
    q = _quote(w, catalog_for(catalog, quiet=True), calibration, market_gco2e_per_kwh)
    if json:
        data = q.to_json(top)
        data["rows"] = [_row_json(r, w, confidence) for r in q.rows[:top]]
        print_json(data)
        return
    if csv_out:
        typer.echo(_csv([r.to_json() for r in q.rows[:top]]), nl=False)
        return
    console = out_console()
    table = _table(q, top)
    band = _band(w)
    if band is not None:
        low, high = band.interval(1.0, confidence)
        table.caption = (
            f"Self-hosted $/unit, {confidence:.0%} interval: x{low:.2f} to x{high:.2f} of each row's figure "
            f"(the model's out-of-sample {band.regime} error, sigma {band.sigma:.2f} over {band.rows} rows)"
        )
    console.print(table)
    c = q.crossover
    if c is not None:
        if c.requests_per_s is None:
            console.print(
                f"Self-hosting never beats {c.hosted} (${c.hosted_usd_per_request * 1e3:.3f} per 1k requests): "
                f"even fully loaded, {c.offer} costs more per request."
            )
        else:
            console.print(
                f"Crossover: above {c.requests_per_s:,.2f} requests/s ({c.output_tokens_per_s:,.0f} output tokens/s), "
                f"self-hosting on {c.offer} (${c.group_usd_per_hour:,.2f}/h per group of "
                f"{c.group_requests_per_s:,.1f} requests/s) beats the cheapest hosted API, {c.hosted}."
            )
    for line in q.skipped:
        err_console().print(f"skipped {line}", highlight=False)


def _label_from_quote_json(file: Path, offer: str | None) -> Label:
    try:
        data = jsonlib.loads(file.read_text(encoding="utf-8"))
        rows = data["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{file}: not the JSON `flopex quote --json` prints (no `rows` list). To fix: pass that or a workload.")
    chosen = next((r for r in rows if offer is None or r.get("offer") == offer), None)
    if chosen is None:
        fail(f"--offer {offer!r} is not in {file}. Offers there: {', '.join(r.get('offer', '?') for r in rows[:8])}.")
    return Label.model_validate(chosen["label"])


def label(
    file: Annotated[Path, typer.Argument(help="A workload YAML, or the JSON `flopex quote --json` printed.")],
    offer: Annotated[str | None, typer.Option("--offer", help="Which offer's row (default: the best).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, text or svg.")] = "text",
    output: Annotated[Path | None, typer.Option("--output", help="Write to this file instead of printing.")] = None,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """The label of one unit of output (cost, energy, carbon, grade) for the best row of a quote or an offer."""
    kind: Literal["json", "text", "svg"] = choose(fmt, ("json", "text", "svg"), "--format")
    if file.suffix.lower() == ".json":
        lab = _label_from_quote_json(file, offer)
    else:
        w = _load(file)
        q = _quote(w, catalog_for(catalog, quiet=True), calibration, None)
        rows = [r for r in q.rows if offer is None or r.offer_id == offer]
        if not rows:
            fail(
                f"--offer {offer!r} is not among the offers that can serve {w.name}. To fix: see `flopex quote {file}`."
            )
        lab = _label(rows[0], w)
    text = {
        "json": lambda: lab.model_dump_json(indent=2),
        "text": lambda: render_text(lab),
        "svg": lambda: render_svg(lab),
    }[kind]()
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        err_console().print(f"wrote {output}")
    else:
        typer.echo(text)


def pricesheet(
    file: WorkloadArg,
    margin: Annotated[float, typer.Option("--margin", help="Margin over cost, as a fraction (0.25 = 25%).")] = 0.25,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown instead of a table.")] = False,
    catalog: CatalogOption = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Per-1M-token prices by context tier, latency class and committed throughput, for a chat workload's model."""
    w = _load(file)
    if not isinstance(w, ChatWorkload):
        fail(f"{file}: a price sheet is per token, for chat or completion workloads; this one is {w.kind}.")
    try:
        sheet = price_sheet(
            w, catalog_for(catalog, quiet=True), efficiency_for(calibration), load_energy_table(), margin
        )
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json(sheet.to_json())
        return
    if markdown:
        typer.echo(sheet.to_markdown(), nl=False)
        return
    table = Table(title=f"Price sheet for {sheet.model}: cost + {margin:.0%}, USD per 1M tokens", header_style="bold")
    for col in ("tier", "latency", "out tok/s", "$/1M in", "$/1M out", "hardware"):
        table.add_column(col, justify="right" if col.startswith(("$", "out")) else "left", overflow="fold")
    for r in sheet.rows:
        table.add_row(
            r.tier, r.latency_class, f"{r.committed_output_tokens_per_s:,.0f}", _num(r.usd_per_mtok_input, ",.3f"),
            _num(r.usd_per_mtok_output, ",.3f"), r.hardware,
        )  # fmt: skip
    out_console().print(table)
