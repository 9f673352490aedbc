"""`flopex workload`: the workload file format, and checking a file against it."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flopex.cli._common import JsonOption, fail, out_console, print_json
from flopex.errors import FlopexError
from flopex.workloads import ChatWorkload, load_workload, workload_schema

__all__ = ["workload_app"]

workload_app = typer.Typer(help="Workload files: their JSON Schema, and validating one.", no_args_is_help=True)


@workload_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a workload file (for editors and CI checks)."""
    typer.echo(jsonlib.dumps(workload_schema(), indent=2))


@workload_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="A workload YAML, e.g. examples/enterprise-chat-70b.yaml.")],
    json: JsonOption = False,
) -> None:
    """Check a workload file; print what flopex read from it (a trace is summarised into buckets)."""
    try:
        w = load_workload(file)
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json(w.model_dump(mode="json"))
        return
    table = Table(title=f"{file}: valid {w.kind} workload {w.name!r}", show_header=False, title_style="bold")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("model", w.model)
    table.add_row("precisions", ", ".join(w.precisions))
    if isinstance(w, ChatWorkload):
        mean_in, mean_out = w.traffic.mean_lengths()
        table.add_row("rate", f"{w.traffic.requests_per_s:,.3g} requests/s, burstiness {w.traffic.burstiness:g}")
        buckets = ", ".join(f"{b.input_tokens:,}/{b.output_tokens:,} x {b.weight:.2f}" for b in w.traffic.buckets())
        table.add_row("lengths (in/out x weight)", buckets)
        table.add_row("mean lengths", f"{mean_in:,.0f} in, {mean_out:,.0f} out")
        ttft, tpot = w.slo.limits(mean_out)
        if w.slo.e2e_p99_s is not None:
            table.add_row("SLO (p99)", f"end to end {w.slo.e2e_p99_s:.3g} s")
        else:
            table.add_row("SLO (p99)", f"TTFT {ttft:.3g} s, TPOT {tpot:.3g} s")
    else:
        for key in ("video", "session", "training", "traffic", "slo"):
            value = getattr(w, key, None)
            if value is not None:
                table.add_row(key, ", ".join(f"{k}={v}" for k, v in value.model_dump().items() if v is not None))
    table.add_row("constraints", ", ".join(f"{k}={v}" for k, v in w.constraints.model_dump().items() if v) or "none")
    out_console().print(table)
