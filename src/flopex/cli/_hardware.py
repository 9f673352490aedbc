"""`flopex hardware`: the accelerators flopex knows."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flopex.catalog import PRECISIONS, Accelerator, load_accelerators
from flopex.cli._common import JsonOption, fail, out_console, print_json
from flopex.errors import UnknownAcceleratorError

__all__ = ["hardware_app"]

hardware_app = typer.Typer(
    help="Accelerator specifications (dense peaks, memory, power, interconnect).", no_args_is_help=True
)


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.4g}{unit}"


@hardware_app.command("list")
def list_(json: JsonOption = False) -> None:
    """Every accelerator: memory, bandwidth, dense peaks per precision, power and scale-up domain."""
    accs = list(load_accelerators().values())
    if json:
        print_json([a.model_dump(mode="json") for a in accs])
        return
    table = Table(title="Accelerators (dense peak TFLOPS; int8 in TOPS)", header_style="bold")
    for col in ("id", "vendor", "kind", "memory", "TB/s", *PRECISIONS, "TDP W", "scale-up"):
        table.add_column(col, justify="left" if col in ("id", "vendor", "kind", "scale-up") else "right")
    for a in accs:
        domain = "-" if a.scale_up_domain is None else f"{a.scale_up_domain} x {a.scale_up_gb_s:g} GB/s"
        table.add_row(
            a.id,
            a.vendor,
            a.kind,
            f"{a.memory_gb:g} GB {a.memory_tech}",
            f"{a.memory_bandwidth_tb_s:g}",
            *(_fmt(a.tflops.get(p)) for p in PRECISIONS),
            _fmt(a.tdp_w),
            domain,
        )
    out_console().print(table)


def _show(a: Accelerator) -> Table:
    table = Table(title=a.id, show_header=False, title_style="bold")
    table.add_column("field", style="bold")
    table.add_column("value")
    peaks = ", ".join(f"{p} {v:,g}" for p, v in a.tflops.items())
    rows = [
        ("aliases", ", ".join(a.aliases) or "-"),
        ("vendor / kind", f"{a.vendor} / {a.kind}"),
        ("memory", f"{a.memory_gb:g} GB {a.memory_tech} ({a.memory_type}), {a.memory_bandwidth_tb_s:g} TB/s"),
        ("dense peak (TFLOPS/TOPS)", peaks),
        ("TDP", _fmt(a.tdp_w, " W")),
        ("idle", f"{_fmt(a.idle_w, ' W')} ({a.idle_basis})"),
        (
            "scale-up",
            "none (PCIe card)"
            if a.scale_up_domain is None
            else f"{a.scale_up_link}: {a.scale_up_gb_s:g} GB/s per chip, domain of {a.scale_up_domain}",
        ),
        ("source", a.source),
        ("as of", str(a.as_of)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


@hardware_app.command("show")
def show(
    accelerator: Annotated[str, typer.Argument(help="Accelerator id or alias, e.g. H100-SXM or h100.")],
    json: JsonOption = False,
) -> None:
    """One accelerator in full, with its sources."""
    try:
        acc = load_accelerators().resolve(accelerator)
    except UnknownAcceleratorError as exc:
        fail(str(exc))
    if json:
        print_json(acc.model_dump(mode="json"))
        return
    out_console().print(_show(acc))
