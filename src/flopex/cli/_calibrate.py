"""`flopex calibrate`: check the performance model against measurements, fit it, probe a local GPU."""

from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from flopex.catalog import load_accelerators
from flopex.cli._common import (
    CalibrationOption,
    JsonOption,
    efficiency_for,
    err_console,
    fail,
    out_console,
    print_json,
    user_efficiency_file,
)
from flopex.cli._probe import probe_gpu
from flopex.errors import FlopexError
from flopex.perf import Comparison, compare, fit, guess_accelerator, load_points, probe_overlay

__all__ = ["calibrate_app", "comparison_table", "shipped_points_file"]

calibrate_app = typer.Typer(
    help="Compare the performance model with measurements, fit its efficiency factors, probe a GPU.",
    no_args_is_help=True,
)

PointsArg = Annotated[
    Path | None,
    typer.Argument(
        help="Measurements in the format of llm-serving.yaml or video-training.yaml (default: both shipped files)."
    ),
]


def shipped_points_file(name: str = "llm-serving.yaml") -> Path:
    return Path(str(resources.files("flopex.data").joinpath(f"calibration/{name}")))


def comparison_table(rows: list[Comparison], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    checks = any(r.role == "check" for r in rows)
    columns = ("point", *(("role",) if checks else ()), "figure", "measured", "predicted", "error", "layout")
    for col in columns:
        table.add_column(col, justify="right" if col in ("measured", "predicted", "error") else "left")
    for r in rows:
        style = "red" if abs(r.error) > 0.15 else None
        cells = [f"{r.measured:,.4g}", f"{r.predicted:,.4g}", f"{r.error:+.1%}", r.layout]
        table.add_row(r.point, *((r.role,) if checks else ()), r.metric, *cells, style=style)
    errors = [abs(r.error) for r in rows]
    table.caption = (
        f"{len(rows)} figures: median |error| {statistics.median(errors):.1%}, max {max(errors):.1%}, "
        f"{sum(e <= 0.15 for e in errors)} within 15%"
    )
    return table


def _json_rows(rows: list[Comparison]) -> list[dict[str, object]]:
    return [
        {
            "point": r.point,
            "metric": r.metric,
            "measured": r.measured,
            "predicted": r.predicted,
            "error": r.error,
            "layout": r.layout,
            "role": r.role,
            "source": r.source,
        }
        for r in rows
    ]


def _write_overlay(target: Path, overlay: dict[str, Any], command: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# efficiency overlay written by `flopex calibrate {command}`\n"
    target.write_text(header + yaml.safe_dump(overlay, sort_keys=False), encoding="utf-8")


@calibrate_app.command("report")
def report(file: PointsArg = None, calibration: CalibrationOption = None, json: JsonOption = False) -> None:
    """Measured, predicted and error for every figure of every point."""
    paths = [file] if file else [shipped_points_file(), shipped_points_file("video-training.yaml")]
    eff = efficiency_for(calibration)
    tables: list[tuple[Path, list[Comparison]]] = []
    try:
        for path in paths:
            tables.append((path, compare(load_points(path), eff, load_accelerators())))
    except FlopexError as exc:
        fail(str(exc))
    if json:
        print_json([row for _, rows in tables for row in _json_rows(rows)])
        return
    for path, rows in tables:
        out_console().print(comparison_table(rows, f"flopex against {path.name}"))


@calibrate_app.command("fit")
def fit_(
    file: Annotated[
        Path, typer.Argument(help="Measurements in the format of llm-serving.yaml or video-training.yaml.")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Factor to fit, e.g. compute.peak_fraction.fp8 or video.attention_fraction (repeatable; "
            "default: chosen from the points).",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Where to write the overlay.")] = None,
    calibration: CalibrationOption = None,
    json: JsonOption = False,
) -> None:
    """Fit a few efficiency factors (least squares on log error) and write them as a user overlay."""
    target = output or user_efficiency_file()
    try:
        result = fit(
            load_points(file),
            efficiency_for(calibration),
            load_accelerators(),
            param,
            note=f"fitted by flopex calibrate fit on {file.name}",
        )
    except FlopexError as exc:
        fail(str(exc))
    _write_overlay(target, result.overlay, "fit")
    if json:
        print_json(
            {
                "parameters": {k: {"before": a, "after": b} for k, (a, b) in result.parameters.items()},
                "overlay": str(target),
                "before": _json_rows(result.before),
                "after": _json_rows(result.after),
            }
        )
        return
    table = Table(title="Fitted factors", header_style="bold")
    for col in ("factor", "before", "after"):
        table.add_column(col, justify="left" if col == "factor" else "right")
    for name, (a, b) in result.parameters.items():
        table.add_row(name, f"{a:.4g}", f"{b:.4g}")
    console = out_console()
    console.print(table)
    console.print(comparison_table(result.after, "After the fit"))
    err_console().print(f"wrote {target}; every prediction now applies it (delete the file to undo).")


@calibrate_app.command("probe")
def probe(
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", help="Catalog id of the GPU (default: guessed).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Where to write the overlay.")] = None,
    json: JsonOption = False,
) -> None:
    """Measure GEMM TFLOPS (bf16, fp8 where supported) and memory bandwidth on this machine's GPU."""
    table = load_accelerators()
    try:
        result = probe_gpu()
    except FlopexError as exc:
        fail(str(exc))
    acc = table.find(accelerator) if accelerator else guess_accelerator(result.device_name, table)
    if acc is None:
        fail(
            f"cannot tell which catalog accelerator {result.device_name!r} is. To fix: pass --accelerator ID "
            "(see `flopex hardware list`)."
        )
    overlay = probe_overlay(result, acc)
    target = output or user_efficiency_file()
    _write_overlay(target, overlay, "probe")
    if json:
        print_json(
            {
                "device": result.device_name,
                "accelerator": acc.id,
                "tflops": result.tflops,
                "memory_tb_s": result.memory_tb_s,
                "overlay": str(target),
            }
        )
        return
    peaks = ", ".join(
        f"{p} {v:,.0f} of {acc.tflops[p]:,.0f} TFLOPS" for p, v in result.tflops.items() if p in acc.tflops
    )
    out_console().print(
        f"{result.device_name} ({acc.id}): {peaks}; memory {result.memory_tb_s:.2f} of "
        f"{acc.memory_bandwidth_tb_s:g} TB/s. Wrote {target}."
    )
