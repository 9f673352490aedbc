"""Importing SkyPilot catalog files (`catalogs/v7|v8/<cloud>/vms.csv`) into flopex offers.

Columns are read by header name, since their order differs by cloud. Known traps are handled and every row
that does not become an offer is reported with its reason:

- CPU-only rows; accelerators flopex does not model;
- GCP: GPU rows priced per GPU with an empty instance type (joined to their host VM row in the same zone),
  TPU rows whose name carries the size (v5p names TensorCores, two per chip) and the 700.0 placeholder price;
- blank prices (AWS p5e and trn2 on-demand), spot prices above on-demand, spot columns that merely repeat the
  on-demand price (RunPod);
- GPU memory given in GB under a MiB label (RunPod), used to tell A100 40 GB from 80 GB.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flopex.catalog._accelerators import Accelerator, AcceleratorTable
from flopex.catalog._files import Record, read_csv_records
from flopex.catalog._offers import Offer, offer_id
from flopex.catalog._regions import Region, RegionTable
from flopex.errors import ImportFormatError, did_you_mean

__all__ = ["Dropped", "SkyPilotImport", "import_skypilot"]

_REQUIRED = (
    "InstanceType",
    "AcceleratorName",
    "AcceleratorCount",
    "vCPUs",
    "MemoryGiB",
    "Region",
    "Price",
    "SpotPrice",
)
_GCP_PLACEHOLDER = 700.0
_SKY_NAMES = {
    "H100": "H100-SXM",
    "H100-MEGA": "H100-SXM",
    "H100-SXM": "H100-SXM",
    "H200": "H200-SXM",
    "A100": "A100-SXM-40GB",
    "A100-80GB": "A100-SXM-80GB",
    "A100-SXM": "A100-SXM-80GB",
    "TRAINIUM": "TRAINIUM1",
    "TRAINIUM2": "TRAINIUM2",
    "INFERENTIA2": "INFERENTIA2",
}
_GCP_HOSTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"a2-(?:highgpu|megagpu)-(\d+)g"), "A100"),
    (re.compile(r"a2-ultragpu-(\d+)g"), "A100-80GB"),
    (re.compile(r"a3-(?:highgpu|edgegpu)-(\d+)g"), "H100"),
    (re.compile(r"a3-megagpu-(\d+)g"), "H100-MEGA"),
    (re.compile(r"a3-ultragpu-(\d+)g"), "H200"),
    (re.compile(r"a4-highgpu-(\d+)g"), "B200"),
]
_G2_L4 = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}
_TPU = re.compile(r"tpu-(v5litepod|v5p|v6e)-(\d+)")
_TPU_IDS = {"v5litepod": ("TPU-V5E", 1), "v5p": ("TPU-V5P", 2), "v6e": ("TPU-V6E", 1)}


@dataclass(frozen=True)
class Dropped:
    line: int
    reason: str
    detail: str


@dataclass
class SkyPilotImport:
    cloud: str
    offers: list[Offer] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    @property
    def dropped_by_reason(self) -> Counter[str]:
        return Counter(d.reason for d in self.dropped)


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    return float(value)


def _memory_gib(gpu_info: str | None, result: SkyPilotImport) -> float | None:
    """Per-GPU memory from the GpuInfo column; values under 1024 'MiB' are GB mislabelled (RunPod)."""
    if not gpu_info:
        return None
    try:
        info = ast.literal_eval(gpu_info)
        size = float(info["Gpus"][0]["MemoryInfo"]["SizeInMiB"])
    except (ValueError, SyntaxError, KeyError, IndexError, TypeError):
        return None
    if size < 1024:
        result.notes["GPU memory labelled MiB but given in GB: read as GB"] += 1
        return size
    return size / 1024


def _accelerator(name: str, memory_gib: float | None, accelerators: AcceleratorTable) -> Accelerator | None:
    acc = accelerators.find(_SKY_NAMES.get(name.upper(), name))
    if acc is not None and acc.id == "A100-SXM-40GB" and memory_gib is not None and memory_gib > 60:
        acc = accelerators["A100-SXM-80GB"]
    return acc


def _gcp_host(instance: str) -> tuple[str, int] | None:
    for pattern, gpu in _GCP_HOSTS:
        m = pattern.fullmatch(instance)
        if m:
            return gpu, int(m.group(1))
    m = re.fullmatch(r"g2-standard-(\d+)", instance)
    if m and int(m.group(1)) in _G2_L4:
        return "L4", _G2_L4[int(m.group(1))]
    return None


@dataclass(frozen=True)
class _Row:
    line: int
    instance: str
    acc_name: str
    count: int
    vcpus: float | None
    memory: float | None
    region: str
    zone: str | None
    price: float | None
    spot: float | None
    gpu_memory: float | None


class _Importer:
    def __init__(
        self, cloud: str, accelerators: AcceleratorTable, regions: RegionTable, source: str, as_of: date
    ) -> None:
        self.cloud, self.accelerators, self.regions = cloud, accelerators, regions
        self.source, self.as_of = source, as_of
        self.result = SkyPilotImport(cloud)
        self.new_regions: dict[str, Region] = {}
        self.by_id: dict[str, Offer] = {}

    def drop(self, line: int, reason: str, detail: str) -> None:
        self.result.dropped.append(Dropped(line, reason, detail))

    def emit(
        self, row: _Row, acc: Accelerator, instance: str, count: int, price: float | None, spot: float | None
    ) -> None:
        if self.cloud == "gcp" and _GCP_PLACEHOLDER in (price, spot):
            self.drop(row.line, "placeholder price 700.0 (not offered in this region)", f"{instance} in {row.region}")
            price = None if price == _GCP_PLACEHOLDER else price
            spot = None if spot == _GCP_PLACEHOLDER else spot
            if price is None and spot is None:
                return
        if price is None:
            self.drop(row.line, "blank on-demand price", f"{instance} in {row.region}")
        if spot is not None and price is not None and spot > price:
            self.drop(row.line, "spot price above on-demand", f"{instance} in {row.region}: spot {spot} > {price}")
            spot = None
        if spot is not None and price is not None and spot == price:
            self.drop(row.line, "spot price repeats on-demand (no real spot market)", f"{instance} in {row.region}")
            spot = None
        self._region(row.region)
        for market, value, zone in (("on_demand", price, None), ("spot", spot, row.zone)):
            if value is None:
                continue
            if value <= 0:
                self.drop(row.line, "non-positive price", f"{instance} in {row.region}: {value}")
                continue
            oid = offer_id(self.cloud, row.region, zone, instance, market)
            if oid in self.by_id:
                self.result.notes["rows repeating an offer in another zone: kept the first"] += 1
                continue
            self.by_id[oid] = Offer(
                id=oid,
                provider=self.cloud,
                region=row.region,
                zone=zone,
                instance_type=instance,
                accelerator=acc.id,
                accelerator_count=count,
                vcpus=int(row.vcpus) if row.vcpus else None,
                memory_gib=row.memory or None,
                market=market,
                price_usd_per_hour=value,
                source=f"{self.source}:{row.line}",
                as_of=self.as_of,
            )

    def _region(self, name: str) -> None:
        if self.regions.find(self.cloud, name) is None and name.lower() not in self.new_regions:
            self.new_regions[name.lower()] = Region(
                provider=self.cloud, region=name, location=f"imported from {self.source}; country unknown"
            )

    def plain_row(self, row: _Row) -> None:
        acc = _accelerator(row.acc_name, row.gpu_memory, self.accelerators)
        if acc is None:
            hint = did_you_mean(row.acc_name, list(self.accelerators))
            self.drop(row.line, "accelerator not modelled by flopex", f"{row.acc_name!r}.{hint}")
            return
        self.emit(row, acc, row.instance, row.count, row.price, row.spot)

    def tpu_row(self, row: _Row, match: re.Match[str]) -> None:
        acc_id, cores_per_chip = _TPU_IDS[match.group(1)]
        chips = max(1, int(match.group(2)) // cores_per_chip)
        self.emit(row, self.accelerators[acc_id], row.acc_name, chips, row.price, row.spot)


def _parse_rows(records: list[Record], imp: _Importer) -> list[_Row]:
    rows = []
    for rec in records:
        v = rec.values
        try:
            rows.append(
                _Row(
                    line=rec.line,
                    instance=v.get("InstanceType") or "",
                    acc_name=v.get("AcceleratorName") or "",
                    count=int(float(v.get("AcceleratorCount") or 0)),
                    vcpus=_num(v.get("vCPUs")),
                    memory=_num(v.get("MemoryGiB")),
                    region=v.get("Region") or "",
                    zone=v.get("AvailabilityZone"),
                    price=_num(v.get("Price")),
                    spot=_num(v.get("SpotPrice")),
                    gpu_memory=_memory_gib(v.get("GpuInfo") or v.get("GPUInfo"), imp.result),
                )
            )
        except ValueError as exc:
            imp.drop(rec.line, "unreadable number", str(exc))
    return rows


def _host_plus_gpus(host: float | None, all_gpus: float | None, one_gpu: float | None, n: int) -> float | None:
    """Host VM price plus its GPUs' price (from the row for n GPUs, else n x the row for one)."""
    gpus = all_gpus if all_gpus is not None else (None if one_gpu is None else one_gpu * n)
    return None if host is None or gpus is None else host + gpus


def _join_gcp(rows: list[_Row], imp: _Importer) -> None:
    gpu_rows = {
        (r.acc_name, r.count, r.region, r.zone): r
        for r in rows
        if not r.instance and r.acc_name and not r.acc_name.lower().startswith("tpu-")
    }
    used: set[int] = set()
    for row in rows:
        host = _gcp_host(row.instance) if row.instance and not row.acc_name else None
        if host is None:
            continue
        name, n = host
        gpu = gpu_rows.get((name, n, row.region, row.zone))
        per_gpu = gpu_rows.get((name, 1, row.region, row.zone))
        acc = _accelerator(name, None, imp.accelerators)
        if acc is None or (gpu is None and per_gpu is None):
            imp.drop(
                row.line, "GCP host VM with no GPU price in its zone", f"{row.instance} in {row.zone or row.region}"
            )
            continue

        price = _host_plus_gpus(row.price, gpu.price if gpu else None, per_gpu.price if per_gpu else None, n)
        spot = _host_plus_gpus(row.spot, gpu.spot if gpu else None, per_gpu.spot if per_gpu else None, n)
        bad = [r for r in (gpu, per_gpu) if r and r.spot is not None and r.price is not None and r.spot > r.price]
        if bad:
            imp.drop(
                bad[0].line,
                "spot price above on-demand",
                f"{bad[0].acc_name} GPU row in {row.zone or row.region}: spot {bad[0].spot} > {bad[0].price}",
            )
            spot = None
        used.update(r.line for r in (gpu, per_gpu) if r is not None)
        imp.emit(row, acc, row.instance, n, price, spot)
    for r in gpu_rows.values():
        if r.line in used:
            continue
        if _accelerator(r.acc_name, None, imp.accelerators) is None:
            imp.drop(r.line, "accelerator not modelled by flopex", repr(r.acc_name))
        else:
            imp.drop(
                r.line,
                "GCP GPU-only price with no host VM row in its zone",
                f"{r.acc_name} x{r.count} in {r.zone or r.region}",
            )


def import_skypilot(
    path: Path, cloud: str, accelerators: AcceleratorTable, regions: RegionTable, as_of: date
) -> SkyPilotImport:
    """Offers and new regions from one SkyPilot `vms.csv`, and every dropped row with its reason."""
    header, records = read_csv_records(path)
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        hints = "".join(did_you_mean(c, header) for c in missing)
        raise ImportFormatError(
            f"{path}: not a SkyPilot vms.csv: missing column(s) {', '.join(missing)}.{hints} "
            f"Found: {', '.join(header) or '(empty file)'}."
        )
    imp = _Importer(cloud.lower(), accelerators, regions, f"skypilot {path.parent.name}/{path.name}", as_of)
    rows = _parse_rows(records, imp)
    for row in rows:
        tpu = _TPU.fullmatch(row.acc_name) if row.acc_name else None
        if tpu:
            imp.tpu_row(row, tpu)
        elif row.acc_name.lower().startswith("tpu-"):
            imp.drop(
                row.line, "accelerator not modelled by flopex", f"{row.acc_name!r} (flopex models TPU v5e, v5p, v6e)"
            )
        elif not row.acc_name or row.count <= 0:
            if not (cloud == "gcp" and _gcp_host(row.instance)):
                imp.drop(row.line, "no accelerator (CPU-only instance)", row.instance)
        elif row.instance or cloud != "gcp":
            imp.plain_row(row)
    if cloud == "gcp":
        _join_gcp(rows, imp)
    imp.result.offers = list(imp.by_id.values())
    imp.result.regions = list(imp.new_regions.values())
    return imp.result
