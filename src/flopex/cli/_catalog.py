"""`flopex catalog`: offers, regions, hosted APIs, imports and validation."""

from __future__ import annotations

import csv
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.markup import escape
from rich.table import Table

from flopex.catalog import (
    MARKETS,
    OFFER_COLUMNS,
    SORT_KEYS,
    Catalog,
    Offer,
    OfferQuery,
    SkyPilotImport,
    SortKey,
    import_skypilot,
    load_catalog,
    overlay_files,
    read_overlay,
    select_offers,
    sort_value,
    write_offers_csv,
    write_regions_csv,
)
from flopex.cli._common import (
    CatalogOption,
    JsonOption,
    catalog_for,
    choose,
    err_console,
    fail,
    out_console,
    print_json,
    user_catalog_dir,
)
from flopex.errors import FlopexError, did_you_mean

__all__ = ["catalog_app"]

catalog_app = typer.Typer(help="What compute can be bought: offers, regions, hosted APIs.", no_args_is_help=True)
import_app = typer.Typer(help="Import offers from other tools' catalog files into your overlay.", no_args_is_help=True)
catalog_app.add_typer(import_app, name="import")

_SORT_LABEL = {
    "price": "$/inst-h",
    "price-per-accelerator": "$/acc-h",
    "price-per-tflops": "$/PFLOPS-h",
    "price-per-tb-s": "$/(TB/s)-h",
}


def _offer_json(offer: Offer, catalog: Catalog) -> dict[str, Any]:
    region = catalog.regions.resolve(offer.provider, offer.region)
    grid = catalog.regions.grid(region)
    acc = catalog.accelerators[offer.accelerator]
    return {
        **offer.model_dump(mode="json"),
        "price_usd_per_accelerator_hour": offer.price_per_accelerator_hour,
        "price_usd_per_tflops_hour": offer.price_per_accelerator_hour / acc.peak_tflops,
        "price_usd_per_tb_s_hour": offer.price_per_accelerator_hour / acc.memory_bandwidth_tb_s,
        "jurisdictions": list(catalog.regions.jurisdictions(region)),
        "grid_gco2e_per_kwh": grid.gco2e_per_kwh,
        "grid_basis": grid.basis,
        "pue": region.pue,
    }


def _explain(catalog: Catalog, offer_id: str) -> None:
    history = catalog.history.get(offer_id.lower())
    if not history:
        fail(
            f"no offer with id {offer_id!r}.{did_you_mean(offer_id, catalog.history)} "
            "List ids with `flopex catalog offers --json`."
        )
    table = Table(title=f"Where {offer_id} comes from (later layers override earlier ones)", header_style="bold")
    for col in ("#", "layer", "file:line", "$/inst-h", "source", "as of", "in effect"):
        table.add_column(col, overflow="fold")
    for i, origin in enumerate(history, 1):
        o = origin.offer
        table.add_row(
            str(i),
            origin.layer,
            f"{origin.file}:{origin.line}",
            f"{o.price_usd_per_hour:.4f}",
            o.source,
            str(o.as_of),
            "yes" if i == len(history) else "overridden",
        )
    out_console().print(table)
    final = history[-1].offer
    if final.derivation:
        out_console().print(final.derivation, highlight=False)
    region = catalog.regions.resolve(final.provider, final.region)
    grid = catalog.regions.grid(region)
    out_console().print(
        f"region {region.provider}/{region.region} ({region.location or '?'}, {region.country or 'country unknown'}): "
        f"grid {grid.gco2e_per_kwh:g} gCO2e/kWh [{grid.dataset} {grid.year or ''}] {grid.note}; "
        f"PUE {region.pue:g} ({region.pue_source})",
        highlight=False,
    )


@catalog_app.command("offers")
def offers(
    accelerator: Annotated[list[str] | None, typer.Option(help="Accelerator id or alias; repeatable.")] = None,
    provider: Annotated[list[str] | None, typer.Option(help="Provider, e.g. aws; repeatable.")] = None,
    market: Annotated[list[str] | None, typer.Option(help=f"One of {', '.join(MARKETS)}; repeatable.")] = None,
    jurisdiction: Annotated[
        list[str] | None, typer.Option(help="Jurisdiction tag, e.g. EU, US, DE; repeatable.")
    ] = None,
    region: Annotated[list[str] | None, typer.Option(help="Region name; repeatable.")] = None,
    min_memory_gb: Annotated[
        float | None, typer.Option(help="Minimum total accelerator memory per instance, GB.")
    ] = None,
    sort: Annotated[str, typer.Option(help=f"One of {', '.join(SORT_KEYS)}.")] = "price-per-accelerator",
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many rows.")] = None,
    explain: Annotated[str | None, typer.Option(help="Show where the offer with this id comes from.")] = None,
    json: JsonOption = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV in flopex's offer schema.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Add the offer id column (for --explain).")] = False,
    catalog_paths: CatalogOption = None,
) -> None:
    """Offers you can buy by the hour, cheapest first."""
    catalog = catalog_for(catalog_paths, quiet=json or csv_out)
    if explain:
        _explain(catalog, explain)
        return
    query = OfferQuery(
        accelerators=tuple(accelerator or ()),
        providers=tuple(provider or ()),
        markets=tuple(choose(m, MARKETS, "--market") for m in market or ()),
        jurisdictions=tuple(jurisdiction or ()),
        regions=tuple(region or ()),
        min_memory_gb=min_memory_gb,
        sort=_sort_key(sort),
        limit=limit,
    )
    try:
        chosen = select_offers(catalog.offers, catalog.accelerators, catalog.regions, query)
    except FlopexError as exc:
        fail(str(exc))
    _check_filters(catalog, query)
    if json:
        print_json([_offer_json(o, catalog) for o in chosen])
    elif csv_out:
        writer = csv.writer(sys.stdout)
        writer.writerow([*OFFER_COLUMNS, "price_usd_per_accelerator_hour"])
        for o in chosen:
            data = o.model_dump()
            writer.writerow(
                ["" if data[c] is None else data[c] for c in OFFER_COLUMNS] + [f"{o.price_per_accelerator_hour:.6g}"]
            )
    else:
        out_console().print(_offers_table(catalog, chosen, query.sort, wide))


def _sort_key(value: str) -> SortKey:
    return cast(SortKey, choose(value, SORT_KEYS, "--sort"))


def _check_filters(catalog: Catalog, query: OfferQuery) -> None:
    providers = {o.provider.lower() for o in catalog.offers}
    for p in query.providers:
        if p.lower() not in providers:
            fail(f"--provider {p!r} has no offers.{did_you_mean(p, sorted(providers))}")
    tags = {t for r in catalog.regions for t in catalog.regions.jurisdictions(r)}
    for j in query.jurisdictions:
        if j.upper() not in tags:
            fail(
                f"--jurisdiction {j!r} is not a known tag.{did_you_mean(j.upper(), sorted(tags))} "
                f"Known: {', '.join(sorted(tags))}."
            )
    names = {o.region.lower() for o in catalog.offers}
    for r in query.regions:
        if r.lower() not in names:
            fail(f"--region {r!r} has no offers.{did_you_mean(r, sorted(names))}")


def _offers_table(catalog: Catalog, chosen: list[Offer], sort: SortKey, wide: bool) -> Table:
    table = Table(title=f"{len(chosen)} offer(s), sorted by {sort}", header_style="bold")
    for col, just in (
        ("provider", "left"),
        ("region", "left"),
        ("instance", "left"),
        ("accelerators", "left"),
        ("market", "left"),
        ("$/inst-h", "right"),
        ("$/acc-h", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    extra = sort in ("price-per-tflops", "price-per-tb-s")
    if extra:
        table.add_column(_SORT_LABEL[sort], justify="right")
    table.add_column("jurisdiction")
    table.add_column("as of")
    if wide:
        table.add_column("id", overflow="fold", style="dim")
    for o in chosen:
        region = catalog.regions.resolve(o.provider, o.region)
        row = [
            o.provider,
            o.region + (f"/{o.zone}" if o.zone else ""),
            o.instance_type,
            f"{o.accelerator_count} x {o.accelerator}",
            o.market,
            f"{o.price_usd_per_hour:,.2f}",
            f"{o.price_per_accelerator_hour:,.3f}",
        ]
        if extra:
            value = sort_value(o, sort, catalog.accelerators)
            row.append(f"{value * 1000:,.3f}" if sort == "price-per-tflops" else f"{value:,.3f}")
        row += [" ".join(catalog.regions.jurisdictions(region)), str(o.as_of)] + ([o.id] if wide else [])
        table.add_row(*row)
    return table


@catalog_app.command("regions")
def regions(
    provider: Annotated[list[str] | None, typer.Option(help="Only these providers; repeatable.")] = None,
    jurisdiction: Annotated[str | None, typer.Option(help="Only regions under this tag, e.g. EU.")] = None,
    json: JsonOption = False,
    catalog_paths: CatalogOption = None,
) -> None:
    """Regions with their country, jurisdictions, grid carbon intensity (and its dataset) and PUE."""
    catalog = catalog_for(catalog_paths, quiet=json)
    wanted = {p.lower() for p in provider or ()}
    rows = []
    for r in sorted(catalog.regions, key=lambda r: (r.provider, r.region)):
        tags = catalog.regions.jurisdictions(r)
        if (wanted and r.provider.lower() not in wanted) or (jurisdiction and jurisdiction.upper() not in tags):
            continue
        grid = catalog.regions.grid(r)
        rows.append((r, tags, grid))
    if json:
        print_json([{**r.model_dump(mode="json"), "jurisdictions": list(t), "grid": g.__dict__} for r, t, g in rows])
        return
    table = Table(title=f"{len(rows)} region(s); grid intensity is location-based", header_style="bold")
    for col in ("provider", "region", "location", "jurisdiction", "gCO2e/kWh", "basis", "dataset", "PUE"):
        table.add_column(col, justify="right" if col in ("gCO2e/kWh", "PUE") else "left")
    for r, tags, g in rows:
        table.add_row(
            r.provider,
            r.region,
            r.location or "",
            " ".join(tags),
            f"{g.gco2e_per_kwh:g}",
            g.basis,
            f"{g.dataset} {g.year or ''}".strip(),
            f"{r.pue:g}",
        )
    out_console().print(table)


@catalog_app.command("hosted")
def hosted(
    model: Annotated[str | None, typer.Option(help="Only this flopex model id, e.g. llama-3.3-70b.")] = None,
    json: JsonOption = False,
) -> None:
    """Hosted APIs priced per token (prices from genai-prices), with published per-user speeds."""
    catalog = catalog_for(None, quiet=True)
    chosen = [h for h in catalog.hosted if model is None or h.model == model.lower()]
    if model and not chosen:
        fail(f"no hosted offer for model {model!r}.{did_you_mean(model, sorted({h.model for h in catalog.hosted}))}")
    chosen.sort(key=lambda h: (h.model, h.output_usd_per_mtok))
    if json:
        print_json([h.model_dump(mode="json") for h in chosen])
        return
    table = Table(title="Hosted APIs ($ per 1M tokens)", header_style="bold")
    for col in ("model", "provider", "provider model", "$/1M in", "$/1M out", "tok/s/user"):
        table.add_column(col, justify="right" if col.startswith(("$", "tok")) else "left")
    for h in chosen:
        speed = "-" if h.output_tokens_per_s_per_user is None else f"{h.output_tokens_per_s_per_user:g}"
        table.add_row(
            h.model, h.provider, h.provider_model, f"{h.input_usd_per_mtok:.3f}", f"{h.output_usd_per_mtok:.3f}", speed
        )
    out_console().print(table)


@catalog_app.command("validate")
def validate(files: Annotated[list[Path], typer.Argument(help="Overlay files or folders (CSV or YAML).")]) -> None:
    """Check overlay files and list every problem (file, line, field, what is wrong, how to fix it)."""
    base = load_catalog()
    problems = 0
    paths = overlay_files(files)
    if not paths:
        fail(f"no .csv, .yaml or .yml files in {', '.join(map(str, files))}.")
    for path in paths:
        try:
            overlay = read_overlay(path, base.accelerators, base.regions)
        except FlopexError as exc:
            err_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            problems += 1
            continue
        for issue in overlay.issues:
            style = "red" if issue.severity == "error" else "yellow"
            out_console().print(
                f"[{style}]{issue.severity}[/] {escape(issue.where)}: {escape(issue.message)}",
                highlight=False,
                soft_wrap=True,
            )
        errors = sum(1 for i in overlay.issues if i.severity == "error")
        problems += errors
        out_console().print(
            f"{path}: {len(overlay.offers)} offer(s) and {len(overlay.regions)} region(s) valid, {errors} error(s).",
            highlight=False,
        )
    if problems:
        raise typer.Exit(1)


@import_app.command("skypilot")
def import_skypilot_cmd(
    files: Annotated[list[Path], typer.Argument(help="SkyPilot catalog files: catalogs/v7|v8/<cloud>/vms.csv.")],
    cloud: Annotated[
        str | None, typer.Option(help="Cloud of the files; default: the name of each file's folder.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder to write the overlay to; default: your overlay folder.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every dropped row.")] = False,
) -> None:
    """Import SkyPilot vms.csv files into your overlay, reporting every dropped row by reason."""
    base = load_catalog()
    folder = output or user_catalog_dir()
    for path in files:
        name = (cloud or path.parent.name).lower()
        if not path.is_file():
            fail(f"{path}: no such file. Give the path of a SkyPilot vms.csv.")
        if not name or name in (".", ""):
            fail(f"{path}: cannot tell the cloud from the folder name. Pass --cloud, e.g. --cloud aws.")
        try:
            result = import_skypilot(path, name, base.accelerators, base.regions, date.today())
        except FlopexError as exc:
            fail(str(exc))
        target = folder / f"skypilot-{name}.csv"
        write_offers_csv(result.offers, target)
        if result.regions:
            write_regions_csv(result.regions, folder / f"skypilot-{name}-regions.csv")
        _import_report(path, target, result, verbose)


def _import_report(path: Path, target: Path, result: SkyPilotImport, verbose: bool) -> None:
    out_console().print(
        f"{path}: imported {len(result.offers)} offer(s) into {target}"
        + (f" (+{len(result.regions)} new region(s), carbon falls back to the world mean)" if result.regions else ""),
        highlight=False,
    )
    if result.dropped:
        table = Table(title=f"{len(result.dropped)} dropped", header_style="bold")
        table.add_column("reason")
        table.add_column("rows", justify="right")
        for reason, n in result.dropped_by_reason.most_common():
            table.add_row(reason, str(n))
        out_console().print(table)
    for note, n in result.notes.items():
        out_console().print(f"note: {note} ({n} row(s))", highlight=False)
    if verbose:
        for d in result.dropped:
            out_console().print(f"  {path}:{d.line}: {d.reason}: {d.detail}", highlight=False)
    elif result.dropped:
        out_console().print("Run with --verbose to list every dropped row.")
