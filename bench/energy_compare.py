"""flopex's energy model beside published measurements of LLM inference energy.

For each point of the energy calibration file (by default the one flopex ships), prints the published figure
(and its range), flopex's figure for the same setting, the ratio, and the accelerator activity flopex used.

    python bench/energy_compare.py [ENERGY.yaml]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.economics import check_energy, load_energy_points, load_energy_table, shipped_energy_points
from flopex.perf import load_efficiency


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else shipped_energy_points()
    start = time.perf_counter()
    checks = check_energy(load_energy_points(path), load_accelerators(), load_efficiency(), load_energy_table())
    elapsed = time.perf_counter() - start
    table = Table(title=f"flopex energy against {path.name}", header_style="bold")
    for col in ("point", "status", "setting", "metric", "published", "flopex", "ratio", "in range", "activity"):
        table.add_column(col, justify="right" if col in ("published", "flopex", "ratio", "activity") else "left")
    for c in checks:
        p = c.point
        published = f"{c.measured:.3g}" + (f" ({c.low:.3g}-{c.high:.3g})" if c.low != c.high else "")
        table.add_row(
            p.id,
            p.status,
            f"{p.model} {p.precision} {p.count}x{p.accelerator} {p.scenario} {p.input_tokens}/{p.output_tokens}",
            f"{c.metric} ({p.scope})",
            published,
            f"{c.predicted:.3g}",
            f"{c.ratio:.2f}",
            "yes" if c.within_range else "no",
            f"{c.activity:.2f}",
        )
    console = Console(width=170)
    console.print(table)
    console.print(f"{len(checks)} points in {elapsed:.2f} s")
    held = [c for c in checks if c.point.status == "check" and c.metric == "J/output token"]
    if held:
        ratios = sorted(abs(c.ratio - 1) for c in held)
        console.print(f"J/output token, checks: median |error| {ratios[len(ratios) // 2]:.0%} over {len(held)}")
    for status in ("known miss", "uncertain"):
        rows = [c for c in checks if c.point.status == status]
        if rows:
            console.print(f"{status}: ratios {', '.join(f'{c.ratio:.2f}' for c in rows)}")


if __name__ == "__main__":
    main()
