"""Loading the catalog: shipped data first, then user overlays, later layers overriding earlier ones by id."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from flopex.catalog._accelerators import Accelerator, AcceleratorTable
from flopex.catalog._files import Record, read_csv_records, read_yaml_sections
from flopex.catalog._hosted import HostedOffer, HostedSpec, price_hosted
from flopex.catalog._issues import ValidationIssue, issues_from_validation
from flopex.catalog._offers import OFFER_COLUMNS, REQUIRED_COLUMNS, Offer, parse_offer
from flopex.catalog._owned import OwnedServer, owned_offer
from flopex.catalog._regions import Country, Region, RegionTable
from flopex.errors import CatalogFileError, did_you_mean

__all__ = ["Catalog", "OfferOrigin", "load_accelerators", "load_catalog", "overlay_files", "read_overlay"]

_REGION_COLUMNS = tuple(Region.model_fields)


@dataclass(frozen=True)
class OfferOrigin:
    """Where one version of an offer came from."""

    file: str
    line: int | None
    layer: str
    offer: Offer


@dataclass(frozen=True)
class Catalog:
    """Everything a user can buy, with where each row came from and every problem found on the way."""

    accelerators: AcceleratorTable
    regions: RegionTable
    offers: tuple[Offer, ...]
    hosted: tuple[HostedOffer, ...]
    history: dict[str, tuple[OfferOrigin, ...]] = field(default_factory=dict)
    issues: tuple[ValidationIssue, ...] = ()

    def offer(self, offer_id: str) -> Offer | None:
        return next((o for o in self.offers if o.id == offer_id.lower()), None)


@dataclass
class _Overlay:
    """What one file contributed: regions, offers (with lines) and problems."""

    regions: list[Region] = field(default_factory=list)
    offers: list[tuple[Offer, int]] = field(default_factory=list)
    issues: list[ValidationIssue] = field(default_factory=list)


def _data(name: str) -> Path:
    return Path(str(resources.files("flopex") / "data" / name))


def load_accelerators() -> AcceleratorTable:
    """The shipped accelerator table (no offers, no prices)."""
    doc = yaml.safe_load(_data("accelerators.yaml").read_text(encoding="utf-8"))
    return AcceleratorTable([Accelerator.model_validate(a) for a in doc["accelerators"]])


def _load_countries() -> list[Country]:
    rows = csv.DictReader(io.StringIO(_data("countries.csv").read_text(encoding="utf-8")))
    return [
        Country.model_validate(
            {**{k: v for k, v in r.items() if v}, "jurisdictions": tuple(r["jurisdictions"].split())}
        )
        for r in rows
    ]


def _record_issues(exc: ValidationError, file: str, record: Record, known: Sequence[str]) -> list[ValidationIssue]:
    return issues_from_validation(
        exc, file=file, line=record.line, values=record.values, field_lines=record.field_lines, known_fields=known
    )


def _parse_regions(records: list[Record], file: str, overlay: _Overlay) -> None:
    for record in records:
        try:
            overlay.regions.append(Region.model_validate({k: v for k, v in record.values.items() if v is not None}))
        except ValidationError as exc:
            overlay.issues += _record_issues(exc, file, record, _REGION_COLUMNS)


def _parse_offers(
    records: list[Record], file: str, accelerators: AcceleratorTable, regions: RegionTable, overlay: _Overlay
) -> None:
    for record in records:
        parsed = parse_offer(
            record.values,
            file=file,
            line=record.line,
            field_lines=record.field_lines,
            accelerators=accelerators,
            regions=regions,
        )
        if isinstance(parsed, Offer):
            overlay.offers.append((parsed, record.line))
        else:
            overlay.issues += parsed


def _parse_owned(
    records: list[Record], file: str, accelerators: AcceleratorTable, regions: RegionTable, overlay: _Overlay
) -> None:
    known = tuple(OwnedServer.model_fields)
    for record in records:
        try:
            server = OwnedServer.model_validate(record.values)
        except ValidationError as exc:
            overlay.issues += _record_issues(exc, file, record, known)
            continue
        acc = accelerators.find(server.accelerator)
        line = record.field_lines.get("accelerator", record.line)
        if acc is None:
            overlay.issues.append(
                ValidationIssue(file, line, "accelerator", accelerators.unknown_message(server.accelerator))
            )
            continue
        if regions.find(server.provider, server.region) is None:
            site = Region(
                provider=server.provider,
                region=server.region,
                country=server.country,
                location="owned site",
                pue=server.pue,
                pue_source=f"owner ({file})",
            )
            overlay.regions.append(site)
            regions = regions.with_regions([site])
        try:
            offer = owned_offer(server, acc, source=f"owned servers in {file}", as_of=date.today())
        except ValueError as exc:
            overlay.issues.append(ValidationIssue(file, line, "server_power_kw", str(exc)))
            continue
        overlay.offers.append((offer, record.line))


def _header_issues(header: list[str], file: str) -> list[ValidationIssue]:
    issues = []
    for col in REQUIRED_COLUMNS:
        if col not in header:
            hint = did_you_mean(col, [h for h in header if h not in OFFER_COLUMNS])
            issues.append(ValidationIssue(file, 1, col, f"required column is missing.{hint} Every row lacks it."))
    for col in header:
        if col not in OFFER_COLUMNS:
            issues.append(
                ValidationIssue(file, 1, col, f"unknown column, ignored.{did_you_mean(col, OFFER_COLUMNS)}", "warning")
            )
    return issues


def _drop_duplicates(overlay: _Overlay, file: str) -> _Overlay:
    """Keep the first row of each offer id in one file; report the others with both lines."""
    seen: dict[str, int] = {}
    kept: list[tuple[Offer, int]] = []
    for offer, line in overlay.offers:
        if offer.id in seen:
            message = (
                f"duplicate offer id {offer.id!r}, first defined on line {seen[offer.id]}; this row is ignored. "
                "To fix: remove one, or give them a different zone, market or id."
            )
            overlay.issues.append(ValidationIssue(file, line, "id", message))
            continue
        seen[offer.id] = line
        kept.append((offer, line))
    overlay.offers = kept
    return overlay


def read_overlay(path: Path, accelerators: AcceleratorTable, regions: RegionTable) -> _Overlay:
    """Regions, offers and owned servers of one overlay file (CSV or YAML), with every problem found."""
    return _drop_duplicates(_read_overlay(path, accelerators, regions), str(path))


def _read_overlay(path: Path, accelerators: AcceleratorTable, regions: RegionTable) -> _Overlay:
    file = str(path)
    overlay = _Overlay()
    if path.suffix.lower() == ".csv":
        header, records = read_csv_records(path)
        if not header:
            overlay.issues.append(
                ValidationIssue(
                    file,
                    None,
                    None,
                    f"the file is empty. An offers CSV starts with the header row {','.join(OFFER_COLUMNS)}.",
                    "warning",
                )
            )
            return overlay
        if "instance_type" not in header and "country" in header:
            _parse_regions(records, file, overlay)
            return overlay
        overlay.issues += _header_issues(header, file)
        known = [
            Record({k: v for k, v in r.values.items() if k in OFFER_COLUMNS}, r.line, r.field_lines) for r in records
        ]
        _parse_offers(known, file, accelerators, regions, overlay)
        return overlay
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise CatalogFileError(f"{file}: flopex reads .csv, .yaml and .yml catalog files. Rename it or convert it.")
    sections_named = ("regions", "offers", "owned")
    sections, unknown = read_yaml_sections(path, sections_named)
    overlay.issues += [
        ValidationIssue(file, line, key, f"unknown section, ignored.{did_you_mean(key, sections_named)}", "warning")
        for key, line in unknown
    ]
    _parse_regions(sections["regions"], file, overlay)
    _parse_owned(sections["owned"], file, accelerators, regions.with_regions(overlay.regions), overlay)
    _parse_offers(sections["offers"], file, accelerators, regions.with_regions(overlay.regions), overlay)
    return overlay


def overlay_files(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, and the .csv/.yaml/.yml files inside named folders (sorted by name)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".yaml", ".yml"))
        else:
            out.append(path)
    return out


def _load_hosted() -> tuple[list[HostedOffer], list[ValidationIssue]]:
    path = _data("hosted.yaml")
    sections, _ = read_yaml_sections(path, ("hosted",))
    specs = [(HostedSpec.model_validate(r.values), r.line) for r in sections["hosted"]]
    return price_hosted(specs, "flopex/data/hosted.yaml")


def load_catalog(overlays: Sequence[Path] = (), *, layer_names: Sequence[str] | None = None) -> Catalog:
    """The shipped catalog with `overlays` applied in order. Bad rows become issues; the rest still loads.

    `layer_names` labels each overlay (e.g. "user folder", "--catalog") in the offers' history.
    """
    accelerators = load_accelerators()
    no_regions = RegionTable([], _load_countries())
    shipped = read_overlay(_data("regions.csv"), accelerators, no_regions)
    regions = no_regions.with_regions(shipped.regions)
    issues: list[ValidationIssue] = list(shipped.issues)
    history: dict[str, list[OfferOrigin]] = {}
    chosen: dict[str, Offer] = {}
    files = [(_data("offers.csv"), "shipped")] + [
        (p, (layer_names[i] if layer_names else "overlay")) for i, p in enumerate(overlays)
    ]
    for path, layer in files:
        overlay = read_overlay(path, accelerators, regions)
        regions = regions.with_regions(overlay.regions)
        issues += overlay.issues
        for offer, line in overlay.offers:
            shown = "flopex/data/offers.csv" if layer == "shipped" else str(path)
            history.setdefault(offer.id, []).append(OfferOrigin(shown, line, layer, offer))
            chosen[offer.id] = offer
    hosted, hosted_issues = _load_hosted()
    return Catalog(
        accelerators=accelerators,
        regions=regions,
        offers=tuple(chosen.values()),
        hosted=tuple(hosted),
        history={k: tuple(v) for k, v in history.items()},
        issues=tuple(issues + hosted_issues),
    )
